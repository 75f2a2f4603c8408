"""Widgets shared by the generation tabs, built by one function and read into a request by one method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.images import fit_within
from studio.requests import RANDOM_SEED
from studio.schedulers import SAMPLER_NAMES
from studio.schedules import AUTOMATIC, SCHEDULE_LABELS
from studio.settings import Settings
from studio.ui.styles import StylePicker, build_style_picker, wire_style_picker
from studio.ui.variation import VariationControls, build_extra_box, build_variation_controls
from studio.validation import MAX_CLIP_SKIP, MAX_GUIDANCE_SCALE, MIN_SIDE

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio


@dataclass(frozen=True)
class GenerationControls:
    """The sampler, steps, CFG, size, seed and batch widgets of one tab. Tabs whose size follows their input
    image (inpainting) have no size sliders."""

    sampler: gr.Dropdown
    steps: gr.Slider
    guidance_scale: gr.Slider
    width: gr.Slider | None
    height: gr.Slider | None
    seed: gr.Number
    random_seed: gr.Button
    reuse_seed: gr.Button
    batch_size: gr.Slider | None
    clip_skip: gr.Slider | None = None
    batch_count: gr.Slider | None = None
    variation: VariationControls | None = None
    tiling: gr.Checkbox | None = None
    scheduler: gr.Dropdown | None = None
    """A1111's "Schedule type" beside the sampler (tabs whose handlers take it)."""

    def variation_inputs(self) -> list[gr.components.Component]:
        assert self.variation is not None
        return self.variation.inputs()

    def seed_resize_inputs(self) -> list[gr.components.Component]:
        assert self.variation is not None
        return self.variation.seed_resize_inputs()

    def sampling_inputs(self) -> list[gr.components.Component]:
        """Sampler, steps, CFG, width, height and seed: in this order after the prompts, the parameters of the
        handlers that draw from text (text to image, Compare, the Lab's trajectory)."""
        assert self.width is not None and self.height is not None
        return [self.sampler, self.steps, self.guidance_scale, self.width, self.height, self.seed]


@dataclass(frozen=True)
class PromptRow:
    """The prompt, the negative prompt, and the Generate and Stop buttons and the style picker beside them."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    generate: gr.Button
    stop: gr.Button
    styles: StylePicker


def prompt_placeholder(studio: Studio, tab: str) -> str:
    """The prompt box's hint: the prompt of the tab's first example, so it is one the served model can draw (the
    micro model knows only its colours and shapes)."""
    examples = studio.examples.get(tab) or studio.examples.get("txt2img") or ()
    sample = examples[0].values.get("prompt") if examples else None
    return f"What to draw, e.g. {sample or 'a watercolor painting of a lighthouse at dawn'}"


def build_prompt_row(tab: str, studio: Studio) -> PromptRow:
    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            prompt, negative = _build_prompts(tab, prompt_placeholder(studio, tab))
            with gr.Row():
                counts = [
                    gr.Markdown("", elem_id=f"{tab}-{which}-tokens", elem_classes="token-count")
                    for which in ("prompt", "negative-prompt")
                ]
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", size="lg", elem_id=f"{tab}-generate")
            stop = gr.Button("Stop", variant="stop", elem_id=f"{tab}-stop")
            picker = build_style_picker(tab, studio)
    wire_style_picker(picker, prompt, negative, studio)
    for box, count, label in zip((prompt, negative), counts, ("Prompt", "Negative prompt"), strict=True):
        wire_token_count(box, count, label, studio)
    return PromptRow(prompt, negative, generate, stop, picker)


def wire_token_count(
    box: gr.Textbox, count: gr.Markdown, label: str, studio: Studio, *, one_per_line: bool = False
) -> None:
    """A1111's token count under a prompt box ("84/150": two chunks of 75), as it is typed or filled in; with
    ``one_per_line`` (Compare's prompts), the longest line's."""

    def counted(text: str | None) -> str:
        lines = [line for line in (text or "").splitlines() if line.strip()] if one_per_line else [text or ""]
        longest = studio.service.tokens.longest(lines)
        return "" if longest is None else f"{label}: {longest.describe()} tokens"

    box.change(
        counted,
        inputs=box,
        outputs=count,
        queue=False,
        show_progress="hidden",
        trigger_mode="always_last",
        api_visibility="private",
    )


def _build_prompts(tab: str, placeholder: str) -> tuple[gr.Textbox, gr.Textbox]:
    prompt = gr.Textbox(
        label="Prompt",
        lines=3,
        placeholder=placeholder,
        elem_id=f"{tab}-prompt",
    )
    negative = gr.Textbox(
        "",  # a value, so API callers may leave it out (an input without one is required by gradio_client and MCP)
        label="Negative prompt",
        lines=2,
        placeholder="What to avoid, e.g. blurry, low quality",
        elem_id=f"{tab}-negative-prompt",
    )
    return prompt, negative


def max_side(settings: Settings) -> int:
    """The longest side the size sliders offer: what ``--max-pixels`` allows next to a 64-pixel side."""
    return max(MIN_SIDE, min(2048, settings.max_pixels // MIN_SIDE // 8 * 8))


def build_generation_controls(
    tab: str,
    studio: Studio,
    *,
    with_size: bool = True,
    with_batch: bool = True,
    with_clip_skip: bool = True,
    with_variation: bool = True,
    with_variation_reuse: bool = True,
    with_seed_resize: bool = True,
    with_tiling: bool = True,
    with_scheduler: bool = True,
) -> GenerationControls:
    """Sampler, steps, CFG, size, seed and batch widgets for ``tab`` (used in elem_ids for tests and CSS), and the
    variation seed and "Resize seed from" behind the seed's "Extra" box, and "Tiling"; with ``with_scheduler``,
    A1111 1.9's "Schedule type" beside the sampler (Automatic: the sampler's own; studio/schedules.py).

    Sampler, steps and CFG open with the served model's own defaults (``studio.generation_defaults``): DPM++ 2M
    Karras, 25 steps and CFG 7 for most models, a few steps without CFG for Turbo and LCM models
    (studio/few_step.py). The size starts at the model's ``studio.native_side`` (64 for the micro model, 512 for
    SD 1.x)."""
    settings = studio.settings
    largest = max_side(settings)
    default_side = max(MIN_SIDE, min(studio.native_side, largest))
    defaults = studio.generation_defaults
    with gr.Row():
        sampler = gr.Dropdown(SAMPLER_NAMES, value=defaults.sampler, label="Sampler", elem_id=f"{tab}-sampler", scale=2)
        scheduler = (
            # Custom values: API callers may send A1111's names in any case ("sgm_uniform"); the service reads them.
            gr.Dropdown(
                list(SCHEDULE_LABELS),
                value=AUTOMATIC,
                label="Schedule type",
                elem_id=f"{tab}-scheduler",
                scale=2,
                allow_custom_value=True,
            )
            if with_scheduler
            else None
        )
        steps = gr.Slider(
            1,
            settings.max_steps,
            value=min(defaults.num_inference_steps, settings.max_steps),
            step=1,
            label="Steps",
            elem_id=f"{tab}-steps",
            scale=3,
        )
    width = height = None
    if with_size:
        with gr.Row():
            width = gr.Slider(MIN_SIDE, largest, value=default_side, step=8, label="Width", elem_id=f"{tab}-width")
            height = gr.Slider(MIN_SIDE, largest, value=default_side, step=8, label="Height", elem_id=f"{tab}-height")
    with gr.Row():
        guidance_scale = gr.Slider(
            0,
            MAX_GUIDANCE_SCALE,
            value=defaults.guidance_scale,
            step=0.5,
            label="CFG scale",
            elem_id=f"{tab}-cfg",
            scale=3,
        )
        clip_skip = (
            gr.Slider(
                1,
                MAX_CLIP_SKIP,
                value=1,
                step=1,
                label="Clip skip (2: anime models)",
                elem_id=f"{tab}-clip-skip",
                scale=2,
            )
            if with_clip_skip
            else None
        )
    batch_count = batch_size = None
    if with_batch:
        with gr.Row():
            batch_count = gr.Slider(
                1, settings.max_batch, value=1, step=1, label="Batch count (one after another)", elem_id=f"{tab}-count"
            )
            batch_size = gr.Slider(
                1, settings.max_batch, value=1, step=1, label="Batch size (at once)", elem_id=f"{tab}-batch"
            )
    with gr.Row(equal_height=True):
        seed = gr.Number(value=RANDOM_SEED, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}-seed", scale=4)
        random_seed = gr.Button("🎲", elem_id=f"{tab}-random-seed", scale=0, min_width=48)
        reuse_seed = gr.Button("♻️", elem_id=f"{tab}-reuse-seed", scale=0, min_width=48)
        extra = build_extra_box(tab) if with_variation else None
    variation = (
        build_variation_controls(
            tab, extra, largest_side=largest, with_reuse=with_variation_reuse, with_seed_resize=with_seed_resize
        )
        if extra is not None
        else None
    )
    tiling = (
        gr.Checkbox(False, label="Tiling: a picture that repeats without a seam (textures)", elem_id=f"{tab}-tiling")
        if with_tiling
        else None
    )
    random_seed.click(lambda: RANDOM_SEED, outputs=seed, queue=False, api_visibility="private")
    return GenerationControls(
        sampler=sampler,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        seed=seed,
        random_seed=random_seed,
        reuse_seed=reuse_seed,
        batch_size=batch_size,
        clip_skip=clip_skip,
        batch_count=batch_count,
        variation=variation,
        tiling=tiling,
        scheduler=scheduler,
    )


def wire_size_follows_image(image: gr.components.Component, controls: GenerationControls, settings: Settings) -> None:
    """A picture the user uploads sets the size sliders to its own size (multiples of 8, within --max-pixels).

    Only uploads: a picture sent from another tab or from PNG Info comes with the size to use, which a change event
    here would overwrite in a race (a hires-fixed A1111 image is twice the size its parameters name)."""
    assert controls.width is not None and controls.height is not None

    def follow(picture: Image.Image | None) -> tuple[Any, Any]:
        if picture is None:
            return gr.skip(), gr.skip()
        return fit_within(picture.width, picture.height, settings.max_pixels)

    image.upload(follow, inputs=image, outputs=[controls.width, controls.height], queue=False, api_visibility="private")


def wire_reuse_last_seed(controls: GenerationControls, last_seed: gr.State) -> None:
    """♻️ puts the seed of the tab's last run (``last_seed``, None before one) into the seed box, for tabs whose
    result is one run rather than a gallery to pick an image from (Compare, the Lab)."""
    controls.reuse_seed.click(
        lambda seed, current: current if seed is None else seed,
        inputs=[last_seed, controls.seed],
        outputs=controls.seed,
        queue=False,
        api_visibility="private",
    )
