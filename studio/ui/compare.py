"""The Compare tab: prompts side by side, crossed with an axis of values, and its ``/compare`` endpoint."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.compare import AXES, NO_AXIS, format_axis_value, parse_axis, parse_prompts
from studio.requests import CompareCell, CompareRequest, CompareResult
from studio.ui.controls import build_generation_controls, wire_reuse_last_seed, wire_token_count
from studio.ui.errors import user_errors
from studio.ui.examples import add_examples
from studio.ui.jobs import GPU_QUEUE, run_job, wire_stop
from studio.ui.results import FORMAT_CHOICES, build_send_buttons, downloadable, selected_index
from studio.ui.styles import build_style_picker, wire_style_picker
from studio.ui.tabs import SendSource
from studio.ui.uploads import CheckedImage
from studio.ui.zerogpu import compare_seconds, gpu

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio
    from studio.service import CompareProgress

EXAMPLE_VALUES = {
    NO_AXIS: "",
    "Sampler": "Euler a, DPM++ 2M Karras, DDIM",
    "Steps": "10, 20, 30",
    "CFG scale": "3, 7, 11",
    "Seed": "1, 2, 3",
    "Strength": "0.3, 0.5, 0.7",
    "Var. seed": "1, 2, 3 (with Extra's variation strength)",
    "Var. strength": "0, 0.25, 0.5, 1",
}


def diff_html(words: Sequence[Sequence[tuple[str, bool]]]) -> str:
    """The prompts one per line, with the words that differ between them marked."""
    lines = []
    for prompt in words:
        marked = (f"<mark>{html.escape(word)}</mark>" if differs else html.escape(word) for word, differs in prompt)
        lines.append(f"<li>{' '.join(marked)}</li>")
    return f'<ol class="prompt-diff">{"".join(lines)}</ol>'


@dataclass(frozen=True)
class CompareTab:
    """What the rest of the app uses of the Compare tab: the prompt boxes (the header's pickers write into them)
    and the cells that "Send to" carries into another tab."""

    prompts: gr.Textbox
    negative_prompt: gr.Textbox
    cells: SendSource


COMPARE_OUTPUTS = 7


def present_comparison(result: CompareResult) -> tuple[Any, ...]:
    """The gallery of cells, the grid, the marked prompts, the notes, the seed, and each cell's prompt (for "Send
    to"), with the selection back on the first cell; JPEG and WebP are offered as such, with their EXIF."""
    gallery = [(downloadable(cell.image), caption(result.request, cell)) for cell in result.cells]
    notes = "\n".join(f"⚠️ {note}" for note in result.notes)
    prompts = [cell.prompt for cell in result.cells]
    grid = downloadable(result.grid)
    return gallery, grid, diff_html(result.prompt_diff), notes, result.request.seed, prompts, 0


def caption(request: CompareRequest, cell: CompareCell) -> str:
    """A cell's caption: its prompt and its values on the axes."""
    parts = [cell.prompt]
    for axis, value in ((request.axis, cell.axis_value), (request.column_axis, cell.column_value)):
        if value is not None:
            parts.append(format_axis_value(axis, value))
    return " · ".join(parts)


def progress_of_cells(progress: gr.Progress) -> CompareProgress:
    def report(steps_done: int, steps: int, cells_done: int, cells: int) -> None:
        progress((steps_done, steps), desc=f"Cells {cells_done}/{cells} done", unit="steps")

    return report


def build_compare_tab(studio: Studio) -> CompareTab:
    """The Compare tab, and what the rest of the app wires to it."""
    examples = studio.examples.get("compare", ())
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                prompts = gr.Textbox(
                    label="Prompts, one per line (2-8)",
                    lines=4,
                    placeholder=examples[0].values["prompts"]
                    if examples
                    else "a red fox in the snow\na red fox in the rain",
                    elem_id="compare-prompts",
                )
                negative = gr.Textbox("", label="Negative prompt", lines=1, elem_id="compare-negative-prompt")
                with gr.Row():
                    counts = [
                        gr.Markdown("", elem_id=f"compare-{which}-tokens", elem_classes="token-count")
                        for which in ("prompts", "negative-prompt")
                    ]
            with gr.Column(scale=1, min_width=160):
                generate = gr.Button("Compare", variant="primary", size="lg", elem_id="compare-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
                picker = build_style_picker("compare", studio)
        wire_style_picker(picker, prompts, negative, studio, one_per_line=True)
        wire_token_count(prompts, counts[0], "Longest prompt", studio, one_per_line=True)
        wire_token_count(negative, counts[1], "Negative prompt", studio)
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    axis = gr.Dropdown(list(AXES), value=NO_AXIS, label="Rows axis", elem_id="compare-axis", scale=1)
                    axis_values = gr.Textbox(
                        "", label="Row values, separated by commas", elem_id="compare-axis-values", scale=3
                    )
                with gr.Row():
                    column_axis = gr.Dropdown(
                        list(AXES),
                        value=NO_AXIS,
                        label="Columns axis (one prompt)",
                        elem_id="compare-column-axis",
                        scale=1,
                    )
                    column_values = gr.Textbox(
                        "",
                        label="Column values (None: the prompts go across)",
                        elem_id="compare-column-values",
                        scale=3,
                    )
                controls = build_generation_controls(
                    "compare",
                    studio,
                    with_batch=False,
                    with_variation_reuse=False,
                    with_seed_resize=False,
                    with_scheduler=False,
                )
                with gr.Accordion("Image to image source (needed for the Strength axis)", open=False):
                    image = CheckedImage(
                        max_megapixels=studio.settings.max_upload_megapixels,
                        label="Source image",
                        type="pil",
                        image_mode="RGB",
                        height=240,
                        elem_id="compare-image",
                    )
                    strength = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength")
            with gr.Column():
                gallery = gr.Gallery(
                    label="Cells", format="png", columns=3, height="auto", elem_id="compare-gallery", interactive=False
                )
                send_buttons = build_send_buttons("compare")
                grid = gr.Image(label="Grid", type="pil", format="png", interactive=False, elem_id="compare-grid")
                diff = gr.HTML(elem_id="compare-diff")
                notes = gr.Markdown(elem_id="compare-notes")
                chosen_format = gr.Radio(
                    FORMAT_CHOICES,
                    value=studio.settings.save_format,
                    label="Save and download as (JPEG and WebP keep the parameters in EXIF, as A1111 does)",
                    elem_id="compare-format",
                )
                last_seed = gr.State(None)
                cell_prompts = gr.State([])
                selected = gr.State(0)
    assert controls.width is not None and controls.height is not None

    for chosen_axis, its_values in ((axis, axis_values), (column_axis, column_values)):
        chosen_axis.change(
            lambda chosen: gr.Textbox(placeholder=f"e.g. {EXAMPLE_VALUES.get(chosen, '')}"),
            inputs=chosen_axis,
            outputs=its_values,
            queue=False,
            api_visibility="private",
        )

    wire_reuse_last_seed(controls, last_seed)
    gallery.select(selected_index, outputs=selected, queue=False, api_visibility="private")

    @gpu(compare_seconds)
    @user_errors(outputs=COMPARE_OUTPUTS)
    def compare(
        prompts: str,
        negative_prompt: str,
        sampler: str,
        steps: float,
        guidance_scale: float,
        width: float,
        height: float,
        seed: float,
        axis: str,
        axis_values: str,
        image: Image.Image | None = None,
        strength: float = 0.75,
        clip_skip: float = 1,
        subseed: float = -1,
        subseed_strength: float = 0,
        tiling: bool = False,
        styles: list[str] | None = None,
        column_axis: str = NO_AXIS,
        column_values: str = "",
        image_format: str | None = None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> Iterator[tuple[Any, ...]]:
        """Compare prompts side by side, crossed with a second axis; everything else (the seed too) stays equal.

        Args:
            prompts: 2-8 prompts, one per line (one prompt is enough with an axis).
            negative_prompt: what to avoid, for every cell.
            sampler: an A1111 sampler name, for every cell (unless the axis is Sampler).
            steps: denoising steps (unless the axis is Steps).
            guidance_scale: CFG scale (unless the axis is CFG scale).
            width: image width, a multiple of 8.
            height: image height, a multiple of 8.
            seed: the seed of every cell, -1 for one random seed shared by all (unless the axis is Seed).
            axis: "None", "Sampler", "Steps", "CFG scale", "Seed", "Strength", "Var. seed" or "Var. strength".
            axis_values: the axis values separated by commas, e.g. "10, 20, 30" or "Euler a, DDIM".
            image: a source image, making every cell image to image (required by the Strength axis).
            strength: denoising strength of image-to-image cells (unless the axis is Strength).
            clip_skip: 1 reads the text encoder's last layer, 2 the one before (anime models), up to 12.
            subseed: the variation seed of every cell, -1 for random (unless the axis is Var. seed).
            subseed_strength: the variation strength, 0 for none (unless the axis is Var. strength).
            tiling: make pictures that repeat without a seam (textures, patterns).
            styles: names of prompt styles (the studio's styles.csv) to add to every prompt, in order.
            column_axis: an axis for the columns too (A1111's X/Y plot), with one prompt; "None": prompts across.
            column_values: the column axis values separated by commas.
            image_format: "png" (default: lossless, with the parameters and a JSON record), "jpeg" or "webp" (the
                parameters in EXIF, as A1111 writes them), for the cells and the grid; none for --save-format.
        Returns:
            The gallery of cells (captioned with prompt and value), the labelled grid image, the prompts with the
            differing words marked, and notes.
        """
        styled, negative_prompt = studio.styles.apply_to_each(parse_prompts(prompts), negative_prompt, styles)
        job = CompareRequest(
            prompts=styled,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,  # type: ignore[arg-type]  # whole floats are accepted by the service
            guidance_scale=guidance_scale,
            width=width,  # type: ignore[arg-type]
            height=height,  # type: ignore[arg-type]
            seed=seed,  # type: ignore[arg-type]
            axis=axis,
            axis_values=parse_axis(axis, axis_values),
            column_axis=column_axis,
            column_values=parse_axis(column_axis, column_values),
            image=image,
            strength=strength,
            clip_skip=clip_skip,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed=subseed,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed_strength=subseed_strength,
            tiling=tiling,
        )
        yield from run_job(
            studio,
            request,
            studio.service.compare,
            job,
            progress_of_cells(progress),
            present_comparison,
            COMPARE_OUTPUTS,
            image_format=image_format,
        )

    inputs = [
        prompts,
        negative,
        *controls.sampling_inputs(),
        axis,
        axis_values,
        image,
        strength,
        controls.clip_skip,
        *controls.variation_inputs(),
        controls.tiling,
        picker.styles,
        column_axis,
        column_values,
        chosen_format,
    ]
    outputs = [gallery, grid, diff, notes, last_seed, cell_prompts, selected]
    event = gr.on(
        triggers=[generate.click],
        fn=compare,
        inputs=inputs,
        outputs=outputs,
        api_name="compare",
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    wire_stop(stop, event, notes, studio)
    add_examples(tab, "compare", compare, inputs, outputs, examples)
    return CompareTab(prompts, negative, SendSource(gallery, selected, cell_prompts, negative, send_buttons))
