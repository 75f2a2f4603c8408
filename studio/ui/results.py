"""The results panel every generation tab shows: a gallery, the seeds, the parameters text and notes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.processing_utils import save_bytes_to_cache
from gradio.utils import get_upload_folder

from studio.metadata import FILE_SUFFIXES, write_image
from studio.requests import GeneratedImage, GenerationResult
from studio.ui.controls import GenerationControls
from studio.ui.variation import variation_seed_of

FORMAT_CHOICES = [("PNG", "png"), ("JPEG", "jpeg"), ("WebP", "webp")]


@dataclass(frozen=True)
class ResultsPanel:
    gallery: gr.Gallery
    seeds: gr.Textbox
    parameters: gr.Textbox
    notes: gr.Markdown
    all_seeds: gr.State
    all_parameters: gr.State
    selected: gr.State
    send_buttons: dict[str, gr.Button]
    image_format: gr.Radio

    def outputs(self) -> list[Any]:
        """What a generation handler returns, in order (the gallery first, as the API promises)."""
        return [
            self.gallery,
            self.seeds,
            self.parameters,
            self.notes,
            self.all_seeds,
            self.all_parameters,
            self.selected,
        ]


RESULT_OUTPUTS = 7


SEND_TARGETS = {"img2img": "Send to img2img", "inpaint": "Send to inpaint", "controlnet": "Send to ControlNet"}


def build_send_buttons(source: str) -> dict[str, gr.Button]:
    """A row of "Send to <tab>" buttons under the pictures of ``source`` (``wire_send_to`` wires them)."""
    with gr.Row():
        return {
            target: gr.Button(label, size="sm", elem_id=f"{source}-send-to-{target}")
            for target, label in SEND_TARGETS.items()
        }


def build_results(tab: str, image_format: str = "png") -> ResultsPanel:
    """The panel for ``tab``; ``image_format`` is the format offered first (``--save-format``)."""
    # PNG, not Gradio's default WebP: lossless, and it keeps the parameters text for PNG Info and other tools.
    # JPEG and WebP downloads are written by ``present`` itself, with the parameters text in EXIF.
    gallery = gr.Gallery(
        label="Images",
        format="png",
        columns=2,
        height="auto",
        object_fit="contain",
        elem_id=f"{tab}-gallery",
        buttons=["download", "fullscreen"],
        interactive=False,
    )
    send_buttons = build_send_buttons(tab)
    seeds = gr.Textbox(label="Seeds", interactive=False, elem_id=f"{tab}-seeds")
    parameters = gr.Textbox(
        label="Generation parameters", lines=4, interactive=False, buttons=["copy"], elem_id=f"{tab}-parameters"
    )
    notes = gr.Markdown(elem_id=f"{tab}-notes")
    chosen_format = gr.Radio(
        FORMAT_CHOICES,
        value=image_format,
        label="Save and download as (JPEG and WebP keep the parameters in EXIF, as A1111 does)",
        elem_id=f"{tab}-format",
    )
    return ResultsPanel(
        gallery=gallery,
        seeds=seeds,
        parameters=parameters,
        notes=notes,
        all_seeds=gr.State([]),
        all_parameters=gr.State([]),
        selected=gr.State(0),
        send_buttons=send_buttons,
        image_format=chosen_format,
    )


def downloadable(item: GeneratedImage) -> Any:
    """What the gallery shows for ``item``: the picture itself when it is a PNG (the gallery writes PNGs with the
    text chunks of ``image.info``), else a JPEG or WebP file written here with the parameters in EXIF, named as
    the saved file is."""
    if item.image_format == "png":
        return item.image
    data = io.BytesIO()
    write_image(item.image, data, item.image_format, item.parameters, {})  # JPEG and WebP carry no JSON record
    name = item.path.name if item.path is not None else f"{item.seed}{FILE_SUFFIXES[item.image_format]}"
    return save_bytes_to_cache(data.getvalue(), name, get_upload_folder())


def selected_index(event: gr.SelectData) -> int:
    """Which picture of a gallery was selected (the first when Gradio does not say)."""
    return event.index if isinstance(event.index, int) else 0


def present(result: GenerationResult) -> tuple[Any, ...]:
    """A result as the values of ``ResultsPanel.outputs()``."""
    gallery = [(downloadable(item), caption(item)) for item in result.images]
    seeds = [item.seed for item in result.images]
    parameters = [item.parameters for item in result.images]
    notes = "\n".join(f"⚠️ {note}" for note in result.notes)
    seeds_text = ", ".join(map(str, seeds))
    subseeds = [item.subseed for item in result.images if item.subseed is not None]
    if subseeds:
        seeds_text += f"; variation seeds {', '.join(map(str, subseeds))}"
    return gallery, seeds_text, parameters[0], notes, seeds, parameters, 0


def caption(item: GeneratedImage) -> str:
    """An image's caption in the gallery: its seed, and its variation seed when it has one."""
    return f"Seed {item.seed}" + (f", variation {item.subseed}" if item.subseed is not None else "")


def wire_results(panel: ResultsPanel, controls: GenerationControls) -> None:
    """Selecting an image shows its parameters; ♻️ puts its seed back into the seed box, and the variation's ♻️
    its variation seed (when it was made with one) into the variation seed box."""

    def on_select(all_parameters: list[str], event: gr.SelectData) -> tuple[str, int]:
        index = selected_index(event)
        text = all_parameters[index] if 0 <= index < len(all_parameters) else ""
        return text, index

    def reuse_seed(all_seeds: list[int], selected: int, current: float) -> float:
        if not all_seeds:
            return current
        return all_seeds[selected] if 0 <= selected < len(all_seeds) else all_seeds[0]

    panel.gallery.select(
        on_select, inputs=[panel.all_parameters], outputs=[panel.parameters, panel.selected], api_visibility="private"
    )
    controls.reuse_seed.click(
        reuse_seed,
        inputs=[panel.all_seeds, panel.selected, controls.seed],
        outputs=controls.seed,
        queue=False,
        api_visibility="private",
    )
    if controls.variation is None or controls.variation.reuse_subseed is None:
        return

    def reuse_subseed(all_parameters: list[str], selected: int, current: float) -> float:
        if not all_parameters:
            return current
        text = all_parameters[selected] if 0 <= selected < len(all_parameters) else all_parameters[0]
        subseed = variation_seed_of(text)
        return current if subseed is None else subseed

    controls.variation.reuse_subseed.click(
        reuse_subseed,
        inputs=[panel.all_parameters, panel.selected, controls.variation.subseed],
        outputs=controls.variation.subseed,
        queue=False,
        api_visibility="private",
    )
