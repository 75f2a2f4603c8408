"""The Image to image tab and its ``/img2img`` endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.images import RESIZE_MODES
from studio.requests import Img2ImgRequest
from studio.schedules import AUTOMATIC
from studio.ui.controls import build_generation_controls, build_prompt_row, wire_size_follows_image
from studio.ui.errors import user_errors
from studio.ui.jobs import in_batches, progress_reporter, run_job
from studio.ui.results import RESULT_OUTPUTS, build_results, present
from studio.ui.tabs import GenerationTab, TabParts, wire_generation_tab
from studio.ui.uploads import CheckedImage
from studio.ui.zerogpu import gpu

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio


def build_img2img_tab(studio: Studio) -> GenerationTab:
    with gr.Tab("Image to image", id="img2img") as tab:
        row = build_prompt_row("img2img", studio)
        with gr.Row():
            with gr.Column():
                image = CheckedImage(
                    max_megapixels=studio.settings.max_upload_megapixels,
                    label="Image",
                    type="pil",
                    image_mode="RGB",
                    sources=["upload", "clipboard"],
                    height=360,
                    elem_id="img2img-image",
                )
                strength = gr.Slider(
                    0, 1, value=0.75, step=0.01, label="Denoising strength", elem_id="img2img-strength"
                )
                resize_mode = gr.Radio(
                    list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode", elem_id="img2img-resize-mode"
                )
                controls = build_generation_controls("img2img", studio, with_seed_resize=False)
            with gr.Column():
                panel = build_results("img2img", studio.settings.save_format)
    assert controls.width is not None and controls.height is not None

    wire_size_follows_image(image, controls, studio.settings)

    @gpu()
    @user_errors(outputs=RESULT_OUTPUTS)
    def img2img(
        image: Image.Image | None,
        prompt: str,
        negative_prompt: str,
        sampler: str,
        steps: float,
        guidance_scale: float,
        strength: float,
        seed: float,
        batch_size: float,
        width: float,
        height: float,
        resize_mode: str,
        image_format: str | None = None,
        clip_skip: float = 1,
        subseed: float = -1,
        subseed_strength: float = 0,
        tiling: bool = False,
        styles: list[str] | None = None,
        batch_count: float = 1,
        scheduler: str = AUTOMATIC,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> Iterator[tuple[Any, ...]]:
        """Redraw an image following a prompt.

        Args:
            image: the picture to start from.
            prompt: what to draw.
                A1111's syntax works: "(word:1.3)", "[word]", "[a:b:0.5]", "BREAK", more than 75 tokens.
            negative_prompt: what to avoid ("" for nothing).
            sampler: an A1111 sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM".
            steps: denoising steps; strength x steps of them run.
            guidance_scale: classifier-free guidance (CFG) scale; 5-9 is usual.
            strength: denoising strength, 0-1: how much of the picture is redrawn (0.75 is usual).
            seed: -1 for random; image i of the batch uses seed + i.
            batch_size: how many images to make.
            width: output width in pixels, a multiple of 8.
            height: output height in pixels, a multiple of 8.
            resize_mode: "Just resize", "Crop and resize" or "Resize and fill".
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
        Returns:
            The gallery of images (with A1111 "parameters" metadata), the seeds used, and the parameters text.
        """
        prompt, negative_prompt = studio.styles.apply(prompt, negative_prompt, styles)
        job = Img2ImgRequest(
            image=image,  # type: ignore[arg-type]  # a missing image is reported by the service
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            strength=strength,
            width=width,
            height=height,
            resize_mode=resize_mode,
            seed=seed,
            batch_size=batch_size,
            clip_skip=clip_skip,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed=subseed,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed_strength=subseed_strength,
            tiling=tiling,
            scheduler=scheduler,
        )
        yield from run_job(
            studio,
            request,
            in_batches(studio, studio.service.img2img, batch_count),
            job,
            progress_reporter(progress),
            present,
            RESULT_OUTPUTS,
            image_format=image_format,
        )

    inputs = [
        image,
        row.prompt,
        row.negative_prompt,
        controls.sampler,
        controls.steps,
        controls.guidance_scale,
        strength,
        controls.seed,
        controls.batch_size,
        controls.width,
        controls.height,
        resize_mode,
        panel.image_format,
        controls.clip_skip,
        *controls.variation_inputs(),
        controls.tiling,
        row.styles.styles,
        controls.batch_count,
        controls.scheduler,
    ]
    parts = TabParts(
        "img2img",
        "Image to image",
        row,
        controls,
        panel,
        img2img,
        inputs,
        image=image,
        strength=strength,
    )
    return wire_generation_tab(tab, parts, studio)
