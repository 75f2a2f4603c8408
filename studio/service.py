"""The studio's service: validate -> seed -> derive a pipeline -> run -> decode -> metadata -> save.

It knows nothing of Gradio or HTTP: the web layers turn their inputs into request dataclasses, call a method
here, and show the result. Every check happens before the GPU is taken, and every message says what to fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from PIL import Image

from studio import __version__
from studio.errors import Cancelled, InvalidRequest
from studio.loading import looks_local
from studio.metadata import Parameters, attach, format_parameters, png_info
from studio.model_manager import ModelManager, Task
from studio.outputs import OutputStore
from studio.requests import GeneratedImage, GenerationResult, Txt2ImgRequest
from studio.schedulers import check_sampler
from studio.vae_decode import decode_latents
from studio.validation import (
    Limits,
    check_batch_size,
    check_guidance_scale,
    check_size,
    check_steps,
    check_text,
    resolve_seed,
)

ProgressCallback = Callable[[int, int], None]
"""Called after every denoising step with (steps done, steps in all)."""

VERSION_TAG = f"Diffusion Studio {__version__}"


def model_name(source: str) -> str:
    """The model as the metadata names it: a Hub id as it is, a local model by its file or folder name only."""
    return Path(source).stem if looks_local(source) else source


def validate_txt2img(request: Txt2ImgRequest, limits: Limits) -> Txt2ImgRequest:
    """The request checked and normalised, with a random seed (-1) replaced by the seed that will be used."""
    if not isinstance(request, Txt2ImgRequest):
        raise InvalidRequest(f"expected a Txt2ImgRequest, got {type(request).__name__}")
    check_sampler(request.sampler)
    width, height = check_size(request.width, request.height, limits)
    return replace(
        request,
        prompt=check_text("prompt", request.prompt),
        negative_prompt=check_text("negative_prompt", request.negative_prompt),
        num_inference_steps=check_steps(request.num_inference_steps, limits),
        guidance_scale=check_guidance_scale(request.guidance_scale),
        width=width,
        height=height,
        batch_size=check_batch_size(request.batch_size, limits),
        seed=resolve_seed(request.seed),
    )


def _step_callback(
    progress: ProgressCallback | None, cancel: threading.Event | None
) -> Callable[[DiffusionPipeline, int, Any, dict[str, Any]], dict[str, Any]]:
    """diffusers' ``callback_on_step_end``: report the step, and interrupt when Stop was pressed."""

    def on_step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if progress is not None:
            progress(step + 1, pipe.num_timesteps)
        if cancel is not None and cancel.is_set():
            pipe._interrupt = True
        return tensors

    return on_step_end


class StudioService:
    """Generation for every tab and API, over one model manager."""

    def __init__(self, manager: ModelManager, limits: Limits, outputs: OutputStore) -> None:
        self.manager = manager
        self.limits = limits
        self.outputs = outputs

    def txt2img(
        self,
        request: Txt2ImgRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate ``request.batch_size`` images; image *i* uses seed ``seed + i`` and its own CPU generator,
        so any image of a batch can be made again alone, at any batch size, on any device."""
        request = validate_txt2img(request, self.limits)
        seeds = [request.seed + i for i in range(request.batch_size)]
        with self.manager.job(Task.TXT2IMG, request.sampler, seeds) as job:
            output = job.pipeline(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                width=request.width,
                height=request.height,
                num_images_per_prompt=request.batch_size,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                output_type="latent",
                callback_on_step_end=_step_callback(progress, cancel),
            )
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped: the generation was interrupted and nothing was kept.")
            images, notes = decode_latents(job.pipeline.vae, job.pipeline.image_processor, output.images)
        return self._finish(request, images, seeds, model_name(job.model.source), notes)

    def _finish(
        self,
        request: Txt2ImgRequest,
        images: Sequence[Image.Image],
        seeds: Sequence[int],
        model: str,
        notes: Sequence[str],
    ) -> GenerationResult:
        """Attach metadata to each image and save it."""
        task = request.to_record()["task"]
        items = []
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            parameters = format_parameters(
                Parameters(
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt,
                    fields={
                        "Steps": request.num_inference_steps,
                        "Sampler": request.sampler,
                        "CFG scale": request.guidance_scale,
                        "Seed": seed,
                        "Size": f"{request.width}x{request.height}",
                        "Model": model,
                        "Version": VERSION_TAG,
                    },
                )
            )
            record = {
                "request": request.to_record(),
                "seed": seed,
                "batch_index": index,
                "model": model,
                "version": VERSION_TAG,
            }
            attach(image, parameters, record)
            path = self.outputs.save(image, task, seed, png_info(parameters, record))
            items.append(GeneratedImage(image=image, seed=seed, parameters=parameters, path=path))
        return GenerationResult(request=request, images=tuple(items), model=model, notes=tuple(notes))
