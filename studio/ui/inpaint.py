"""The Inpaint tab: a mask painted in the browser (or uploaded), and its ``/inpaint`` endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image, ImageChops

from studio.errors import InvalidRequest
from studio.images import MASKED_CONTENT, mask_from_image, mask_from_layers
from studio.requests import RANDOM_SEED, InpaintRequest
from studio.schedulers import DEFAULT_SAMPLER
from studio.schedules import AUTOMATIC
from studio.soft_inpainting import PRESERVATION_STRENGTH, SCHEDULE_BIAS, TRANSITION_CONTRAST, SoftInpainting
from studio.ui.controls import build_generation_controls, build_prompt_row
from studio.ui.errors import user_errors
from studio.ui.jobs import in_batches, progress_reporter, run_job
from studio.ui.results import RESULT_OUTPUTS, build_results, present
from studio.ui.soft_inpainting import build_soft_inpainting
from studio.ui.tabs import GenerationTab, TabParts, wire_generation_tab
from studio.ui.uploads import CheckedImage, CheckedImageMask
from studio.ui.zerogpu import gpu
from studio.validation import MAX_MASK_BLUR, MAX_PADDING

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio

BRUSH_RADIUS_AT_512 = 24
"""The brush's radius in picture pixels on a 512-pixel model (SD 1.x); other models' scale with their side."""


def brush_radius(native_side: int) -> int:
    """The brush and eraser radius for a model drawing ``native_side`` pixels: the same share of the picture on
    every model (24 on SD 1.x, 48 on SDXL's 1024, 3 on the micro model's 64, where 24 would cover most of it)."""
    return max(2, round(native_side * BRUSH_RADIUS_AT_512 / 512))


def editor_image_and_mask(
    value: dict[str, Any] | Image.Image | None, uploaded_mask: Image.Image | None
) -> tuple[Image.Image, Image.Image]:
    """The picture and the mask (white = repaint) from the editor's value and the optional uploaded mask.

    Painted strokes are read from the layers' alpha channel; an uploaded mask is read by brightness. Both
    together repaint wherever either says so.
    """
    if isinstance(value, Image.Image):
        background, layers = value, []
    elif isinstance(value, dict):
        background, layers = value.get("background"), value.get("layers") or []
    else:
        background, layers = None, []
    if not isinstance(background, Image.Image):
        raise InvalidRequest("image is missing: upload the picture to inpaint")
    mask = mask_from_layers(layers, background.size)
    if uploaded_mask is not None:
        mask = ImageChops.lighter(mask, mask_from_image(uploaded_mask, background.size))
    return background, mask


def build_inpaint_tab(studio: Studio) -> GenerationTab:
    with gr.Tab("Inpaint", id="inpaint") as tab:
        row = build_prompt_row("inpaint", studio)
        brush_size = brush_radius(studio.native_side)
        with gr.Row():
            with gr.Column():
                # RGBA and PNG: the strokes are read from the layers' alpha, which WebP or RGB would lose.
                editor = CheckedImageMask(
                    max_megapixels=studio.settings.max_upload_megapixels,
                    label="Image (paint over what to change)",
                    type="pil",
                    image_mode="RGBA",
                    format="png",
                    sources=["upload", "clipboard"],
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=brush_size),
                    eraser=gr.Eraser(default_size=brush_size),
                    transforms=(),
                    height=420,
                    elem_id="inpaint-editor",
                )
                with gr.Accordion("Upload a mask instead (white = change)", open=False):
                    mask = CheckedImage(
                        max_megapixels=studio.settings.max_upload_megapixels,
                        label="Mask",
                        type="pil",
                        image_mode="RGBA",
                        sources=["upload"],
                        elem_id="inpaint-mask",
                    )
                with gr.Row():
                    invert_mask = gr.Checkbox(label="Invert mask", value=False, elem_id="inpaint-invert")
                    only_masked = gr.Checkbox(
                        label="Only masked (crop around the mask, generate at full resolution)",
                        value=False,
                        elem_id="inpaint-only-masked",
                    )
                with gr.Row():
                    mask_blur = gr.Slider(0, MAX_MASK_BLUR, value=4, step=1, label="Mask blur", elem_id="inpaint-blur")
                    padding = gr.Slider(
                        0, MAX_PADDING, value=32, step=4, label="Only masked padding (px)", elem_id="inpaint-padding"
                    )
                masked_content = gr.Radio(
                    list(MASKED_CONTENT), value="original", label="Masked content", elem_id="inpaint-masked-content"
                )
                strength = gr.Slider(
                    0, 1, value=0.75, step=0.01, label="Denoising strength", elem_id="inpaint-strength"
                )
                soft = build_soft_inpainting("inpaint")
                controls = build_generation_controls("inpaint", studio, with_size=False, with_seed_resize=False)
            with gr.Column():
                panel = build_results("inpaint", studio.settings.save_format)

    @gpu()
    @user_errors(outputs=RESULT_OUTPUTS)
    def inpaint(
        image: dict[str, Any] | None,
        mask: Image.Image | None = None,
        # Defaults as the widgets have them: with an optional mask before them, every later one needs one.
        prompt: str = "",
        negative_prompt: str = "",
        sampler: str = DEFAULT_SAMPLER,
        steps: float = 25,
        guidance_scale: float = 7.0,
        strength: float = 0.75,
        seed: float = RANDOM_SEED,
        mask_blur: float = 4,
        inpaint_only_masked: bool = False,
        padding: float = 32,
        masked_content: str = "original",
        invert_mask: bool = False,
        batch_size: float = 1,
        image_format: str | None = None,
        clip_skip: float = 1,
        subseed: float = -1,
        subseed_strength: float = 0,
        tiling: bool = False,
        styles: list[str] | None = None,
        batch_count: float = 1,
        scheduler: str = AUTOMATIC,
        soft_inpainting: bool = False,
        soft_schedule_bias: float = SCHEDULE_BIAS.default,
        soft_preservation_strength: float = PRESERVATION_STRENGTH.default,
        soft_transition_contrast: float = TRANSITION_CONTRAST.default,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> Iterator[tuple[Any, ...]]:
        """Repaint the masked part of an image; everything outside the mask is kept pixel for pixel.

        Args:
            image: the editor value: {"background": picture, "layers": [painted strokes], "composite": ...}; the
                mask is wherever the layers are not transparent.
            mask: an optional separate mask image, white where the picture should change.
            prompt: what to paint in the masked region.
                A1111's syntax works: "(word:1.3)", "[word]", "[a:b:0.5]", "BREAK", more than 75 tokens.
            negative_prompt: what to avoid ("" for nothing).
            sampler: an A1111 sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM".
            steps: denoising steps; strength x steps of them run.
            guidance_scale: classifier-free guidance (CFG) scale; 5-9 is usual.
            strength: denoising strength, 0-1: how much of the masked region is redrawn.
            seed: -1 for random; image i of the batch uses seed + i.
            mask_blur: pixels of softening at the mask's edge, so no seam shows.
            inpaint_only_masked: repaint only a crop around the mask, at the model's full resolution.
            padding: pixels of context around the mask in "only masked" mode.
            masked_content: what the model starts from in the mask: "original", "fill", "latent noise" or
                "latent nothing".
            invert_mask: repaint everything except the mask.
            batch_size: how many images to make.
            image_format: "png" (default), "jpeg" or "webp" (the parameters in EXIF); none for --save-format.
            clip_skip: 1 reads the text encoder's last layer, 2 the one before (anime models), up to 12.
            subseed: the variation seed, -1 for random; image i uses subseed + i (and every image the seed).
            subseed_strength: how far the starting noise moves towards the variation seed's (0 off, 1 all).
            tiling: make a picture that repeats without a seam (textures, patterns).
            styles: names of prompt styles (the studio's styles.csv) to add to the prompts, in order.
            batch_count: how many batches to make one after another (seeds continue from batch to batch).
            scheduler: A1111's schedule type: "Automatic" (the sampler's own), "Uniform", "Karras", "Exponential",
                "Polyexponential", "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM" or
                "Beta" (name or label, any case).
            soft_inpainting: A1111's soft inpainting: each pixel is repainted as much as the blurred mask says, so
                the edges blend instead of seaming (a high mask blur helps).
            soft_schedule_bias: soft inpainting's schedule bias (0-8): below 1 the original is kept more near the
                end of the steps, above 1 more at the start.
            soft_preservation_strength: how strongly partly masked pixels keep the original (0-8).
            soft_transition_contrast: soft inpainting's transition contrast boost (1-32).
        Returns:
            The gallery of images (with A1111 "parameters" metadata), the seeds used, and the parameters text.
        """
        picture, painted = editor_image_and_mask(image, mask)
        prompt, negative_prompt = studio.styles.apply(prompt, negative_prompt, styles)
        job = InpaintRequest(
            image=picture,
            mask_image=painted,
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            strength=strength,
            mask_blur=mask_blur,  # type: ignore[arg-type]  # whole floats are accepted by the service
            masked_content=masked_content,
            inpaint_only_masked=inpaint_only_masked,
            padding=padding,  # type: ignore[arg-type]
            invert_mask=invert_mask,
            seed=seed,
            batch_size=batch_size,
            clip_skip=clip_skip,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed=subseed,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed_strength=subseed_strength,
            tiling=tiling,
            scheduler=scheduler,
            soft_inpainting=(
                SoftInpainting(soft_schedule_bias, soft_preservation_strength, soft_transition_contrast)
                if soft_inpainting
                else None
            ),
        )
        yield from run_job(
            studio,
            request,
            in_batches(studio, studio.service.inpaint, batch_count),
            job,
            progress_reporter(progress),
            present,
            RESULT_OUTPUTS,
            image_format=image_format,
        )

    inputs = [
        editor,
        mask,
        row.prompt,
        row.negative_prompt,
        controls.sampler,
        controls.steps,
        controls.guidance_scale,
        strength,
        controls.seed,
        mask_blur,
        only_masked,
        padding,
        masked_content,
        invert_mask,
        controls.batch_size,
        panel.image_format,
        controls.clip_skip,
        *controls.variation_inputs(),
        controls.tiling,
        row.styles.styles,
        controls.batch_count,
        controls.scheduler,
        *soft.inputs(),
    ]
    parts = TabParts(
        "inpaint",
        "Inpaint",
        row,
        controls,
        panel,
        inpaint,
        inputs,
        image=editor,
        strength=strength,
        soft_inpainting=soft,
    )
    return wire_generation_tab(tab, parts, studio)
