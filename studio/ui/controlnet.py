"""The ControlNet tab: a Canny edge map that follows the thresholds at once, and ``/controlnet`` + ``/canny``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.images import PREPROCESSORS, as_edge_map, canny, to_rgb
from studio.requests import MAX_CONTROL_WEIGHT, ControlNetRequest, GenerationResult
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

EDGE_CAPTION = "Canny edges"


@user_errors(outputs=1)
def canny_preview(
    image: Image.Image | None, low_threshold: float, high_threshold: float, preprocessor: str = "canny"
) -> Image.Image | None:
    """The edge map of an image, as the ControlNet will see it (CPU only, outside the GPU queue).

    Args:
        image: the picture to find edges in.
        low_threshold: Canny lower hysteresis threshold, 1-255 (default 100).
        high_threshold: Canny upper hysteresis threshold, 1-255 (default 200); a swapped pair is put in order.
        preprocessor: "canny" (default), or "none" to return the picture as the edge map it already is.
    Returns:
        The edge map: white edges on black.
    """
    if image is None:
        return None
    if preprocessor == "none":
        return as_edge_map(to_rgb(image))
    return canny(to_rgb(image), int(low_threshold), int(high_threshold))


def build_controlnet_tab(studio: Studio) -> GenerationTab:
    with gr.Tab("ControlNet", id="controlnet") as tab:
        row = build_prompt_row("controlnet", studio)
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    image = CheckedImage(
                        max_megapixels=studio.settings.max_upload_megapixels,
                        label="Control image",
                        type="pil",
                        image_mode="RGB",
                        sources=["upload", "clipboard"],
                        height=300,
                        elem_id="controlnet-image",
                    )
                    edges = gr.Image(
                        label="Edge map",
                        type="pil",
                        format="png",  # lossless: WebP would blur the one-pixel edges
                        interactive=False,
                        height=300,
                        elem_id="controlnet-edges",
                    )
                preprocessor = gr.Radio(
                    list(PREPROCESSORS),
                    value="canny",
                    label="Preprocessor (none: the upload already is an edge map)",
                    elem_id="controlnet-preprocessor",
                )
                with gr.Row():
                    low = gr.Slider(1, 255, value=100, step=1, label="Low threshold", elem_id="controlnet-low")
                    high = gr.Slider(1, 255, value=200, step=1, label="High threshold", elem_id="controlnet-high")
                with gr.Row():
                    weight = gr.Slider(
                        0, MAX_CONTROL_WEIGHT, value=1.0, step=0.05, label="Control weight", elem_id="controlnet-weight"
                    )
                    start = gr.Slider(0, 1, value=0.0, step=0.01, label="Guidance start", elem_id="controlnet-start")
                    end = gr.Slider(0, 1, value=1.0, step=0.01, label="Guidance end", elem_id="controlnet-end")
                controls = build_generation_controls("controlnet", studio)
            with gr.Column():
                panel = build_results("controlnet", studio.settings.save_format)
    assert controls.width is not None and controls.height is not None

    # The preview is pure CPU work: it runs at once, outside the GPU queue, and only the latest move counts.
    gr.on(
        triggers=[image.change, preprocessor.change, low.change, high.change],
        fn=canny_preview,
        inputs=[image, low, high, preprocessor],
        outputs=edges,
        trigger_mode="always_last",
        api_name="canny",
        concurrency_limit=None,
    )
    # Thresholds mean nothing to a ready-made edge map.
    preprocessor.change(
        lambda module: (gr.Slider(interactive=module == "canny"), gr.Slider(interactive=module == "canny")),
        inputs=preprocessor,
        outputs=[low, high],
        queue=False,
        api_visibility="private",
    )

    wire_size_follows_image(image, controls, studio.settings)

    @gpu()
    @user_errors(outputs=RESULT_OUTPUTS)
    def controlnet(
        image: Image.Image | None,
        prompt: str,
        negative_prompt: str,
        sampler: str,
        steps: float,
        guidance_scale: float,
        low_threshold: float,
        high_threshold: float,
        conditioning_scale: float,
        guidance_start: float,
        guidance_end: float,
        seed: float,
        batch_size: float,
        preprocessor: str,
        width: float,
        height: float,
        image_format: str | None = None,
        clip_skip: float = 1,
        subseed: float = -1,
        subseed_strength: float = 0,
        tiling: bool = False,
        styles: list[str] | None = None,
        batch_count: float = 1,
        seed_resize_from_w: float = 0,
        seed_resize_from_h: float = 0,
        scheduler: str = AUTOMATIC,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> Iterator[tuple[Any, ...]]:
        """Generate images that follow the Canny edges of a picture.

        Args:
            image: the control picture (or a ready edge map with preprocessor "none").
            prompt: what to draw.
                A1111's syntax works: "(word:1.3)", "[word]", "[a:b:0.5]", "BREAK", more than 75 tokens.
            negative_prompt: what to avoid ("" for nothing).
            sampler: an A1111 sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM".
            steps: denoising steps.
            guidance_scale: classifier-free guidance (CFG) scale; 5-9 is usual.
            low_threshold: Canny lower threshold, 1-255 (default 100).
            high_threshold: Canny upper threshold, 1-255 (default 200).
            conditioning_scale: control weight, 0-2 (0 ignores the edges, 1 is usual).
            guidance_start: fraction of the steps at which the ControlNet starts acting (0-1).
            guidance_end: fraction of the steps at which it stops acting (0-1).
            seed: -1 for random; image i of the batch uses seed + i.
            batch_size: how many images to make.
            preprocessor: "canny" (find edges) or "none" (the image is an edge map).
            width: output width, a multiple of 8 (the uploaded image's size by default in the UI).
            height: output height, a multiple of 8.
            image_format: "png" (default), "jpeg" or "webp" (the parameters in EXIF); none for --save-format.
            clip_skip: 1 reads the text encoder's last layer, 2 the one before (anime models), up to 12.
            subseed: the variation seed, -1 for random; image i uses subseed + i (and every image the seed).
            subseed_strength: how far the starting noise moves towards the variation seed's (0 off, 1 all).
            tiling: make a picture that repeats without a seam (textures, patterns).
            styles: names of prompt styles (the studio's styles.csv) to add to the prompts, in order.
            batch_count: how many batches to make one after another (seeds continue from batch to batch).
            seed_resize_from_w: "resize seed from" width: with the height, the starting noise is built around the
                seed's noise at that size, keeping a picture's composition at another size (0 for off).
            seed_resize_from_h: "resize seed from" height (0 for off).
            scheduler: A1111's schedule type: "Automatic" (the sampler's own), "Uniform", "Karras", "Exponential",
                "Polyexponential", "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM" or
                "Beta" (name or label, any case).
        Returns:
            The gallery: the images (with A1111 metadata) and, last, the edge map they followed (a PNG).
        """
        prompt, negative_prompt = studio.styles.apply(prompt, negative_prompt, styles)
        job = ControlNetRequest(
            image=image,  # type: ignore[arg-type]  # a missing image is reported by the service
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            preprocessor=preprocessor,
            low_threshold=low_threshold,  # type: ignore[arg-type]  # whole floats are accepted by the service
            high_threshold=high_threshold,  # type: ignore[arg-type]
            controlnet_conditioning_scale=conditioning_scale,
            control_guidance_start=guidance_start,
            control_guidance_end=guidance_end,
            width=width,  # type: ignore[arg-type]
            height=height,  # type: ignore[arg-type]
            seed=seed,
            batch_size=batch_size,
            clip_skip=clip_skip,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed=subseed,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed_strength=subseed_strength,
            seed_resize_from_w=seed_resize_from_w,  # type: ignore[arg-type]  # whole floats pass the checks
            seed_resize_from_h=seed_resize_from_h,  # type: ignore[arg-type]
            tiling=tiling,
            scheduler=scheduler,
        )

        def with_edge_map(result: GenerationResult) -> tuple[Any, ...]:
            gallery, *rest = present(result)
            if result.control_image is not None:
                gallery = [*gallery, (result.control_image.image, EDGE_CAPTION)]
            return (gallery, *rest)

        yield from run_job(
            studio,
            request,
            in_batches(studio, studio.service.controlnet, batch_count),
            job,
            progress_reporter(progress),
            with_edge_map,
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
        low,
        high,
        weight,
        start,
        end,
        controls.seed,
        controls.batch_size,
        preprocessor,
        controls.width,
        controls.height,
        panel.image_format,
        controls.clip_skip,
        *controls.variation_inputs(),
        controls.tiling,
        row.styles.styles,
        controls.batch_count,
        *controls.seed_resize_inputs(),
        controls.scheduler,
    ]
    parts = TabParts(
        "controlnet",
        "ControlNet",
        row,
        controls,
        panel,
        controlnet,
        inputs,
        image=image,
    )
    return wire_generation_tab(tab, parts, studio)
