"""What the app knows of each generation tab, and the "Send to" buttons that carry images between tabs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.images import fit_within
from studio.ui.controls import GenerationControls, PromptRow
from studio.ui.examples import add_examples
from studio.ui.hires import HiresControls
from studio.ui.jobs import GPU_QUEUE, wire_stop
from studio.ui.results import ResultsPanel, wire_results
from studio.ui.soft_inpainting import SoftInpaintingControls

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio


@dataclass(frozen=True)
class GenerationTab:
    """One generation tab: where its prompt, input image and settings live, its results, and its generate event."""

    tab_id: str
    label: str
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    image: gr.components.Component | None
    results: ResultsPanel
    event: gr.events.Dependency
    controls: GenerationControls
    strength: gr.Slider | None = None
    hires: HiresControls | None = None
    soft_inpainting: SoftInpaintingControls | None = None


@dataclass(frozen=True)
class TabParts:
    """What a generation tab builds before it is wired: its widgets, and the handler with the widgets it reads."""

    tab_id: str
    label: str
    row: PromptRow
    controls: GenerationControls
    panel: ResultsPanel
    handler: Callable[..., Any]
    inputs: list[gr.components.Component]
    image: gr.components.Component | None = None
    strength: gr.Slider | None = None
    hires: HiresControls | None = None
    soft_inpainting: SoftInpaintingControls | None = None


def wire_generation_tab(tab: gr.Tab, parts: TabParts, studio: Studio) -> GenerationTab:
    """Generate (or Enter in the prompt) runs the handler on the GPU queue as the ``/<tab_id>`` API endpoint; Stop,
    the results panel and the tab's examples are wired to it. Every generation tab is wired this one way."""
    row, panel = parts.row, parts.panel
    event = gr.on(
        triggers=[row.generate.click, row.prompt.submit],
        fn=parts.handler,
        inputs=parts.inputs,
        outputs=panel.outputs(),
        api_name=parts.tab_id,
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    wire_stop(row.stop, event, panel.notes, studio)
    wire_results(panel, parts.controls)
    add_examples(tab, parts.tab_id, parts.handler, parts.inputs, panel.outputs(), studio.examples.get(parts.tab_id, ()))
    return GenerationTab(
        parts.tab_id,
        parts.label,
        row.prompt,
        row.negative_prompt,
        parts.image,
        panel,
        event,
        parts.controls,
        parts.strength,
        parts.hires,
        parts.soft_inpainting,
    )


@dataclass(frozen=True)
class SendSource:
    """Pictures that "Send to" buttons carry into another tab: a gallery (or one image), which of its pictures is
    selected, and the prompts they were made from: a text box, or a ``gr.State`` holding one prompt per picture
    (Compare's cells each have their own)."""

    pictures: gr.components.Component
    selected: gr.State
    prompt: gr.components.Component
    negative_prompt: gr.components.Component
    buttons: dict[str, gr.Button]

    @classmethod
    def of_tab(cls, tab: GenerationTab) -> SendSource:
        return cls(tab.results.gallery, tab.results.selected, tab.prompt, tab.negative_prompt, tab.results.send_buttons)


def selected_image(pictures: Sequence[Any] | Image.Image | None, selected: int) -> Image.Image | None:
    """The picture selected in a result gallery (the first when nothing was selected), or the one image shown."""
    if isinstance(pictures, Image.Image):
        return pictures.convert("RGB")
    if not pictures:
        return None
    item = pictures[selected] if 0 <= selected < len(pictures) else pictures[0]
    path = item[0] if isinstance(item, list | tuple) else item
    with Image.open(path) as image:
        return image.convert("RGB")


def selected_prompt(prompt: str | Sequence[str] | None, selected: int) -> str:
    """The prompt of the selected picture: the box's text, or the selected picture's own prompt."""
    if isinstance(prompt, str) or prompt is None:
        return prompt or ""
    return prompt[selected] if 0 <= selected < len(prompt) else (prompt[0] if prompt else "")


def size_outputs(tab: GenerationTab) -> list[gr.components.Component]:
    """The tab's size sliders, where it has them (inpainting keeps the picture's own size)."""
    controls = tab.controls
    return [controls.width, controls.height] if controls.width is not None and controls.height is not None else []


def wire_send_to(
    tabs: gr.Tabs, all_tabs: Sequence[GenerationTab], sources: Sequence[SendSource], max_pixels: int
) -> None:
    """Every "Send to <tab>" button (under each generation tab's results and under ``sources``: Compare's cells,
    the Lab's pictures) puts the selected picture and its prompts into that tab, sets its size sliders to the
    picture's size, and opens it."""
    targets = {tab.tab_id: tab for tab in all_tabs if tab.image is not None}
    for source in [*map(SendSource.of_tab, all_tabs), *sources]:
        for target_id, button in source.buttons.items():
            target = targets[target_id]
            target_image = target.image
            assert target_image is not None
            sizes = size_outputs(target)

            def send(
                pictures: Sequence[Any] | Image.Image | None,
                selected: int,
                prompt: str | Sequence[str] | None,
                negative: str,
                to: str = target_id,
                with_size: bool = bool(sizes),
            ) -> tuple[Any, ...]:
                image = selected_image(pictures, selected)
                if image is None:
                    raise gr.Error("Generate an image first, then send it.", print_exception=False)
                size = fit_within(image.width, image.height, max_pixels) if with_size else ()
                return (image, selected_prompt(prompt, selected), negative, *size, gr.Tabs(selected=to))

            button.click(
                send,
                inputs=[source.pictures, source.selected, source.prompt, source.negative_prompt],
                outputs=[target_image, target.prompt, target.negative_prompt, *sizes, tabs],
                queue=False,
                api_visibility="private",
            )
