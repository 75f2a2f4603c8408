"""The Text to image tab and its ``/txt2img`` endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.hires import SAME_SAMPLER
from studio.requests import DEFAULT_HR_SCALE, DEFAULT_HR_STRENGTH, DEFAULT_HR_UPSCALER, Txt2ImgRequest
from studio.schedules import AUTOMATIC
from studio.ui.controls import build_generation_controls, build_prompt_row
from studio.ui.errors import user_errors
from studio.ui.hires import build_hires_controls
from studio.ui.jobs import in_batches, progress_reporter, run_job
from studio.ui.results import RESULT_OUTPUTS, build_results, present
from studio.ui.tabs import GenerationTab, TabParts, wire_generation_tab
from studio.ui.zerogpu import gpu

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio


def build_txt2img_tab(studio: Studio) -> GenerationTab:
    """Prompt, controls, Generate and Stop, and the results; call inside a ``gr.Tabs``."""
    with gr.Tab("Text to image", id="txt2img") as tab:
        row = build_prompt_row("txt2img", studio)
        with gr.Row():
            with gr.Column():
                controls = build_generation_controls("txt2img", studio)
                hires = build_hires_controls("txt2img", studio.settings, controls)
            with gr.Column():
                panel = build_results("txt2img", studio.settings.save_format)

    @gpu()
    @user_errors(outputs=RESULT_OUTPUTS)
    def txt2img(
        prompt: str,
        negative_prompt: str,
        sampler: str,
        steps: float,
        guidance_scale: float,
        width: float,
        height: float,
        seed: float,
        batch_size: float,
        image_format: str | None = None,
        enable_hr: bool = False,
        hr_upscaler: str = DEFAULT_HR_UPSCALER,
        hr_scale: float = DEFAULT_HR_SCALE,
        hr_second_pass_steps: float = 0,
        denoising_strength: float = DEFAULT_HR_STRENGTH,
        clip_skip: float = 1,
        subseed: float = -1,
        subseed_strength: float = 0,
        tiling: bool = False,
        styles: list[str] | None = None,
        batch_count: float = 1,
        hr_sampler_name: str = SAME_SAMPLER,
        hr_prompt: str = "",
        hr_negative_prompt: str = "",
        seed_resize_from_w: float = 0,
        seed_resize_from_h: float = 0,
        scheduler: str = AUTOMATIC,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> Iterator[tuple[Any, ...]]:
        """Generate images from a text prompt.

        Args:
            prompt: what to draw.
                A1111's syntax works: "(word:1.3)", "[word]", "[a:b:0.5]", "BREAK", more than 75 tokens.
            negative_prompt: what to avoid ("" for nothing).
            sampler: an A1111 sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM".
            steps: denoising steps (25 is a good default).
            guidance_scale: classifier-free guidance (CFG) scale; 5-9 is usual, 0 or 1 turns guidance off.
            width: image width in pixels, a multiple of 8.
            height: image height in pixels, a multiple of 8.
            seed: -1 for random; image i of the batch uses seed + i.
            batch_size: how many images to make.
            image_format: "png" (default: lossless, with the parameters and a JSON record), "jpeg" or "webp" (the
                parameters in EXIF, as A1111 writes them); none for the server's --save-format.
            enable_hr: hires fix: draw at width x height, upscale by hr_scale, then redraw at denoising_strength.
            hr_upscaler: "Latent" (and its variants), "Lanczos" or "Nearest".
            hr_scale: upscale by (1-4).
            hr_second_pass_steps: the hires pass's steps; 0 for as many as steps.
            denoising_strength: how much the hires pass redraws (0-1; 0.7 is A1111's default).
            clip_skip: 1 reads the text encoder's last layer, 2 the one before (anime models), up to 12.
            subseed: the variation seed, -1 for random; image i uses subseed + i (and every image the seed).
            subseed_strength: how far the starting noise moves towards the variation seed's (0 off, 1 all).
            tiling: make a picture that repeats without a seam (textures, patterns).
            styles: names of prompt styles (the studio's styles.csv) to add to the prompts, in order.
            batch_count: how many batches to make one after another (seeds continue from batch to batch).
            hr_sampler_name: the hires pass's sampler; "Use same sampler" (the default) for the first pass's.
            hr_prompt: the hires pass's own prompt ("" for the prompt); the styles are added to it too.
            hr_negative_prompt: the hires pass's own negative prompt ("" for the negative prompt).
            seed_resize_from_w: "resize seed from" width: with the height, the starting noise is built around the
                seed's noise at that size, keeping a picture's composition at another size (0 for off).
            seed_resize_from_h: "resize seed from" height (0 for off).
            scheduler: A1111's schedule type: "Automatic" (the sampler's own), "Uniform", "Karras", "Exponential",
                "Polyexponential", "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM" or
                "Beta" (name or label, any case).
        Returns:
            The gallery of images (with A1111 "parameters" metadata), the seeds used, and the parameters text.
        """
        prompt, negative_prompt = studio.styles.apply(prompt, negative_prompt, styles)
        hr_prompt, hr_negative_prompt = studio.styles.apply_to_given(hr_prompt, hr_negative_prompt, styles)
        job = Txt2ImgRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            seed=seed,
            batch_size=batch_size,
            enable_hr=enable_hr,
            hr_upscaler=hr_upscaler,
            hr_scale=hr_scale,
            hr_second_pass_steps=hr_second_pass_steps,  # type: ignore[arg-type]  # whole floats pass the checks
            denoising_strength=denoising_strength,
            hr_sampler_name=hr_sampler_name,
            hr_prompt=hr_prompt,
            hr_negative_prompt=hr_negative_prompt,
            clip_skip=clip_skip,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed=subseed,  # type: ignore[arg-type]  # whole floats pass the checks
            subseed_strength=subseed_strength,
            seed_resize_from_w=seed_resize_from_w,  # type: ignore[arg-type]  # whole floats pass the checks
            seed_resize_from_h=seed_resize_from_h,  # type: ignore[arg-type]
            tiling=tiling,
            scheduler=scheduler,
        )
        yield from run_job(
            studio,
            request,
            in_batches(studio, studio.service.txt2img, batch_count),
            job,
            progress_reporter(progress),
            present,
            RESULT_OUTPUTS,
            image_format=image_format,
        )

    inputs = [
        row.prompt,
        row.negative_prompt,
        *controls.sampling_inputs(),
        controls.batch_size,
        panel.image_format,
        *hires.inputs(),
        controls.clip_skip,
        *controls.variation_inputs(),
        controls.tiling,
        row.styles.styles,
        controls.batch_count,
        *hires.second_pass_inputs(),
        *controls.seed_resize_inputs(),
        controls.scheduler,
    ]
    parts = TabParts("txt2img", "Text to image", row, controls, panel, txt2img, inputs, hires=hires)
    return wire_generation_tab(tab, parts, studio)
