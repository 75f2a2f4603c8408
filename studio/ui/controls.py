"""Widgets shared by the generation tabs, built by one function and read into a request by one method."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.requests import RANDOM_SEED
from studio.schedulers import DEFAULT_SAMPLER, SAMPLER_NAMES
from studio.settings import Settings
from studio.validation import MAX_GUIDANCE_SCALE, MIN_SIDE


@dataclass(frozen=True)
class GenerationControls:
    """The prompt, sampler, size, seed and batch widgets of one tab."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    sampler: gr.Dropdown
    steps: gr.Slider
    guidance_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    seed: gr.Number
    random_seed: gr.Button
    reuse_seed: gr.Button
    batch_size: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        """The widgets in the order of the handlers' parameters (the API's parameter order too)."""
        return [
            self.prompt,
            self.negative_prompt,
            self.sampler,
            self.steps,
            self.guidance_scale,
            self.width,
            self.height,
            self.seed,
            self.batch_size,
        ]


def build_prompts(tab: str) -> tuple[gr.Textbox, gr.Textbox]:
    prompt = gr.Textbox(
        label="Prompt",
        lines=3,
        placeholder="What to draw, e.g. a watercolor painting of a lighthouse at dawn",
        elem_id=f"{tab}-prompt",
    )
    negative = gr.Textbox(
        label="Negative prompt",
        lines=2,
        placeholder="What to avoid, e.g. blurry, low quality",
        elem_id=f"{tab}-negative-prompt",
    )
    return prompt, negative


def build_generation_controls(
    tab: str, settings: Settings, prompt: gr.Textbox, negative: gr.Textbox
) -> GenerationControls:
    """Sampler, steps, CFG, size, seed and batch widgets for ``tab`` (used in elem_ids for tests and CSS)."""
    max_side = max(MIN_SIDE, min(2048, settings.max_pixels // MIN_SIDE // 8 * 8))
    default_side = min(512, max_side)
    with gr.Row():
        sampler = gr.Dropdown(SAMPLER_NAMES, value=DEFAULT_SAMPLER, label="Sampler", elem_id=f"{tab}-sampler", scale=2)
        steps = gr.Slider(
            1,
            settings.max_steps,
            value=min(25, settings.max_steps),
            step=1,
            label="Steps",
            elem_id=f"{tab}-steps",
            scale=3,
        )
    with gr.Row():
        width = gr.Slider(MIN_SIDE, max_side, value=default_side, step=8, label="Width", elem_id=f"{tab}-width")
        height = gr.Slider(MIN_SIDE, max_side, value=default_side, step=8, label="Height", elem_id=f"{tab}-height")
    with gr.Row():
        guidance_scale = gr.Slider(
            0, MAX_GUIDANCE_SCALE, value=7.0, step=0.5, label="CFG scale", elem_id=f"{tab}-cfg", scale=3
        )
        batch_size = gr.Slider(
            1, settings.max_batch, value=1, step=1, label="Batch size", elem_id=f"{tab}-batch", scale=2
        )
    with gr.Row(equal_height=True):
        seed = gr.Number(value=RANDOM_SEED, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}-seed", scale=4)
        random_seed = gr.Button("🎲", elem_id=f"{tab}-random-seed", scale=0, min_width=48)
        reuse_seed = gr.Button("♻️", elem_id=f"{tab}-reuse-seed", scale=0, min_width=48)
    random_seed.click(lambda: RANDOM_SEED, outputs=seed, queue=False, api_visibility="private")
    return GenerationControls(
        prompt=prompt,
        negative_prompt=negative,
        sampler=sampler,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        seed=seed,
        random_seed=random_seed,
        reuse_seed=reuse_seed,
        batch_size=batch_size,
    )
