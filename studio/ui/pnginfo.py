"""The PNG Info tab: drop an image, read the settings it was made with, send them to a generation tab.

Reads what this studio writes and what A1111, Forge and SD.Next write (the ``parameters`` text in a PNG chunk, or
in the EXIF ``UserComment`` of a JPEG or WebP). "Send to" fills every field the target tab has: prompt, negative
prompt, sampler, steps, CFG, seed, size, denoising strength, clip skip, the variation seed, tiling and the hires fix
(and the picture itself for image to image and inpainting), then opens that tab. Also the ``/png_info`` endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from studio.errors import InvalidRequest
from studio.metadata import ImageMetadata, read_metadata
from studio.pnginfo import SentSettings, settings_from_metadata
from studio.ui.controls import max_side
from studio.ui.errors import user_errors
from studio.ui.tabs import GenerationTab, size_outputs
from studio.ui.uploads import CheckedImage

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio

SEND_TARGETS = {"txt2img": "Send to txt2img", "img2img": "Send to img2img", "inpaint": "Send to inpaint"}
NO_PARAMETERS = (
    "This image carries no generation parameters (no A1111 `parameters` text, no EXIF comment). Images saved by "
    "this studio, A1111, Forge or SD.Next have them, unless a site or an editor stripped them."
)


@dataclass(frozen=True)
class PngInfoTab:
    image: gr.Image
    parameters: gr.Textbox
    fields: gr.JSON
    notes: gr.Markdown
    send_buttons: dict[str, gr.Button]


def read_file(path: str) -> ImageMetadata:
    """The metadata of the image file at ``path``; a file that is not an image is an ``InvalidRequest``."""
    try:
        with Image.open(path) as image:
            image.load()  # PNG text chunks may follow the pixels; they are read with them
            return read_metadata(image)
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise InvalidRequest("This file is not an image the studio can read; drop a PNG, JPEG or WebP.") from None


def fields_view(meta: ImageMetadata) -> dict[str, Any] | None:
    """What the Fields panel shows: the prompts, the ``Key: value`` fields, and our JSON record when there is one."""
    if meta.parameters is None and not meta.record:
        return None
    view: dict[str, Any] = {}
    if meta.parameters is not None:
        view["prompt"] = meta.parameters.prompt
        view["negative_prompt"] = meta.parameters.negative_prompt
        view.update(meta.parameters.fields)
    if meta.record:
        view["diffusion-studio record"] = dict(meta.record)
    return view


def build_pnginfo_tab(studio: Studio) -> PngInfoTab:
    """The tab (call inside a ``gr.Tabs``) and its ``/png_info`` endpoint; ``wire_pnginfo_send_to`` wires "Send to"
    once the generation tabs exist."""
    with gr.Tab("PNG Info", id="pnginfo"), gr.Row():
        with gr.Column():
            # A file path, untouched: decoding into PIL and back would drop the metadata being read.
            image = CheckedImage(
                max_megapixels=studio.settings.max_upload_megapixels,
                label="Image (PNG, JPEG or WebP)",
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
                height=420,
                elem_id="pnginfo-image",
            )
        with gr.Column():
            parameters = gr.Textbox(
                label="Parameters", lines=6, interactive=False, buttons=["copy"], elem_id="pnginfo-parameters"
            )
            with gr.Row():
                send_buttons = {
                    target: gr.Button(label, size="sm", elem_id=f"pnginfo-send-to-{target}")
                    for target, label in SEND_TARGETS.items()
                }
            notes = gr.Markdown(elem_id="pnginfo-notes")
            fields = gr.JSON(label="Fields", elem_id="pnginfo-fields")
    settings = studio.settings

    @user_errors(outputs=3)
    def png_info(image: str | None) -> tuple[str, dict[str, Any] | None, str]:
        """The generation parameters an image carries (this studio's, A1111's, Forge's or SD.Next's).

        Args:
            image: a PNG, JPEG or WebP file.
        Returns:
            The A1111 parameters text; its fields (prompt, negative prompt, each "Key: value", and this studio's
            JSON record when present); and notes (what "Send to" would change to fit this studio).
        """
        if image is None:
            return "", None, ""
        meta = read_file(image)
        sent = settings_from_metadata(meta, max_steps=settings.max_steps, max_side=max_side(settings))
        if sent is None:
            return "", None, NO_PARAMETERS
        notes = "\n".join(f"⚠️ {note}" for note in sent.notes)
        return meta.parameters_text or "", fields_view(meta), notes

    gr.on(
        triggers=[image.change],
        fn=png_info,
        inputs=image,
        outputs=[parameters, fields, notes],
        api_name="png_info",
        concurrency_limit=None,  # CPU only, outside the GPU queue
    )
    return PngInfoTab(image=image, parameters=parameters, fields=fields, notes=notes, send_buttons=send_buttons)


def _value(value: object) -> Any:
    return gr.skip() if value is None else value


def field_updates(sent: SentSettings, target: GenerationTab) -> list[Any]:
    """The values for ``target``'s fields, in the order of ``field_outputs`` (a skip where the image is silent)."""
    values = [
        sent.prompt,
        sent.negative_prompt,
        _value(sent.sampler),
        *([_value(sent.scheduler)] if target.controls.scheduler is not None else []),
        _value(sent.steps),
        _value(sent.guidance_scale),
        _value(sent.seed),
    ]
    if size_outputs(target):
        values += [_value(sent.width), _value(sent.height)]
    if target.strength is not None:
        values.append(_value(sent.strength))
    if target.controls.clip_skip is not None:
        values.append(_value(sent.clip_skip))
    if target.controls.variation is not None:
        strength = sent.subseed_strength
        resizes = target.controls.variation.seed_resize_from_w is not None
        resize_from = sent.seed_resize_from if resizes else None
        extra = gr.skip() if strength is None else strength > 0 or resize_from not in (None, (0, 0))
        values += [extra, _value(sent.subseed), _value(strength)]
        if resizes:
            values += [gr.skip(), gr.skip()] if resize_from is None else list(resize_from)
    if target.controls.tiling is not None:
        values.append(_value(sent.tiling))
    if target.hires is not None:
        hires = sent.hires
        if hires is None:
            settings = [*target.hires.inputs()[1:], *target.hires.second_pass_inputs()]
            values += [False, *(gr.skip() for _ in settings)]  # off; its settings as they are
        else:
            values += [True, hires.upscaler, hires.scale, hires.steps, hires.strength]
            values += [hires.sampler, hires.prompt, hires.negative_prompt]
    if target.soft_inpainting is not None:
        values += target.soft_inpainting.values(sent.soft_inpainting)
    return values


def field_outputs(target: GenerationTab) -> list[gr.components.Component]:
    controls = target.controls
    outputs: list[gr.components.Component] = [
        target.prompt,
        target.negative_prompt,
        controls.sampler,
        *([controls.scheduler] if controls.scheduler is not None else []),
        controls.steps,
        controls.guidance_scale,
        controls.seed,
        *size_outputs(target),
    ]
    if target.strength is not None:
        outputs.append(target.strength)
    if controls.clip_skip is not None:
        outputs.append(controls.clip_skip)
    if controls.variation is not None:
        outputs += [controls.variation.extra, *controls.variation.inputs()]
        if controls.variation.seed_resize_from_w is not None:
            outputs += controls.variation.seed_resize_inputs()
    if controls.tiling is not None:
        outputs.append(controls.tiling)
    if target.hires is not None:
        outputs += [*target.hires.inputs(), *target.hires.second_pass_inputs()]
    if target.soft_inpainting is not None:
        outputs += target.soft_inpainting.inputs()
    return outputs


def wire_pnginfo_send_to(tabs: gr.Tabs, tab: PngInfoTab, targets: Sequence[GenerationTab], studio: Studio) -> None:
    """Each "Send to <tab>" button fills that tab's fields from the dropped image (and puts the picture in, where
    the tab takes one), then opens it. Anything changed to fit this studio is said in a warning."""
    by_id = {target.tab_id: target for target in targets}
    settings = studio.settings
    for target_id, button in tab.send_buttons.items():
        target = by_id[target_id]
        outputs = field_outputs(target)
        if target.image is not None:
            outputs.append(target.image)

        @user_errors(outputs=len(outputs) + 1)
        def send(path: str | None, to: GenerationTab = target) -> tuple[Any, ...]:
            if path is None:
                raise InvalidRequest("Drop an image first, then send its parameters.")
            sent = settings_from_metadata(read_file(path), max_steps=settings.max_steps, max_side=max_side(settings))
            if sent is None:
                raise InvalidRequest(NO_PARAMETERS)
            for note in sent.notes:
                gr.Warning(note)
            values = field_updates(sent, to)
            if to.image is not None:
                with Image.open(path) as picture:
                    values.append(picture.convert("RGB"))
            return (*values, gr.Tabs(selected=to.tab_id))

        button.click(
            send,
            inputs=tab.image,
            outputs=[*outputs, tabs],
            queue=False,
            api_visibility="private",
        )
