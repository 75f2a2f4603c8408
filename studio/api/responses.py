"""A1111's answers: the generation response (``images``, ``parameters``, ``info``), progress, and PNG Info."""

from __future__ import annotations

import json
from typing import Any

from studio import __version__
from studio.api.images import encode_png, text_chunks
from studio.api.mapping import A1111Job
from studio.api.progress import Tracker
from studio.api.runner import Outcome
from studio.api.schemas import GenerationBody
from studio.metadata import PARAMETERS_KEY, parse_parameters, read_metadata
from studio.requests import GeneratedImage


def generation(
    body: GenerationBody, job: A1111Job, outcome: Outcome, model: str, model_hash: str | None
) -> dict[str, Any]:
    """The response to txt2img/img2img. As the sd-webui-controlnet extension does, a ControlNet job's edge
    maps follow its images. ``model_hash`` is the serving model's, for a job that made nothing."""
    made: list[GeneratedImage] = [item for result in outcome.results for item in result.images]
    maps = [result.control_image for result in outcome.results if result.control_image is not None]
    images = [encode_png(item.image) for item in [*made, *maps]] if job.send_images else []
    parameters = body.model_dump()
    if not parameters.get("include_init_images", True):
        parameters.update(init_images=None, mask=None)
    if made:  # the model that made them (an override_settings checkpoint may serve no longer)
        model_hash = parse_parameters(made[0].parameters).fields.get("Model hash", model_hash)
    info = {**_info(job, outcome, made, model, model_hash), "styles": list(body.styles)}
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}


def _info(
    job: A1111Job, outcome: Outcome, made: list[GeneratedImage], model: str, model_hash: str | None
) -> dict[str, Any]:
    """Every key A1111 1.10's ``Processed.js()`` sends, with its types (``sd_model_hash`` a string, ``sd_vae_name``
    and ``sd_vae_hash`` null as A1111 sends them when the model's own VAE serves), for whole and interrupted jobs
    alike; then the studio's own ``interrupted`` and ``notes``."""
    request = job.request
    seeds = [item.seed for item in made]
    subseeds = [item.subseed for item in made if item.subseed is not None]
    size = made[0].image.size if made else (getattr(request, "width", None), getattr(request, "height", None))
    width, height = size
    if width is None or height is None:  # an interrupted inpaint or ControlNet job: the input decides the size
        width, height = request.image.size  # type: ignore[union-attr]
    notes = list(dict.fromkeys(note for result in outcome.results for note in result.notes))
    strength = getattr(request, "strength", None)
    if strength is None and getattr(request, "enable_hr", False):
        strength = request.denoising_strength  # type: ignore[union-attr]
    return {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * len(made),
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * len(made),
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "subseed": subseeds[0] if subseeds else request.subseed,
        "all_subseeds": subseeds or [-1] * len(made),
        "subseed_strength": float(request.subseed_strength),
        "width": int(width),
        "height": int(height),
        "sampler_name": request.sampler,
        "cfg_scale": float(request.guidance_scale),
        "steps": request.num_inference_steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model,
        "sd_model_hash": model_hash or "",
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": max(getattr(request, "seed_resize_from_w", 0), 0) or -1,  # txt2img's only
        "seed_resize_from_h": max(getattr(request, "seed_resize_from_h", 0), 0) or -1,
        "denoising_strength": None if strength is None else float(strength),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": [item.parameters for item in made],
        "job_timestamp": outcome.timestamp,
        "clip_skip": getattr(request, "clip_skip", 1),
        "is_using_inpainting_conditioning": job.task == "inpaint",
        "version": f"Diffusion Studio {__version__}",
        "interrupted": outcome.interrupted,
        "notes": notes,
    }


def progress(tracker: Tracker | None, waiting: int, with_image: bool) -> dict[str, Any]:
    """``/progress`` for a caller: their running job, or an idle state (saying so when their job waits)."""
    if tracker is None:
        return {
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {"job_count": waiting, "job": "waiting" if waiting else ""},
            "current_image": None,
            "textinfo": "Waiting for the GPU" if waiting else None,
            "current_task": None,
        }
    preview = tracker.preview
    return {
        "progress": tracker.fraction(),
        "eta_relative": tracker.eta_relative(),
        "state": {
            "skipped": False,
            "interrupted": tracker.interrupted,
            "stopping_generation": False,
            "job": f"{tracker.task} {tracker.job_no + 1}/{tracker.job_count}",
            "job_count": tracker.job_count,
            "job_timestamp": tracker.timestamp,
            "job_no": tracker.job_no,
            "sampling_step": tracker.sampling_step,
            "sampling_steps": tracker.sampling_steps,
        },
        "current_image": encode_png(preview) if with_image and preview is not None else None,
        "textinfo": None,
        "current_task": tracker.task_id or tracker.task,
    }


def png_info(image: Any) -> dict[str, Any]:
    """``/png-info``: the A1111 ``parameters`` text, every other text chunk, and the parameters taken apart
    (``Prompt``, ``Negative prompt``, then each field as A1111's reader names it). A JPEG or WebP carries the text
    in its EXIF ``UserComment``, where A1111 writes it."""
    chunks = text_chunks(image)
    text = chunks.pop(PARAMETERS_KEY, "") or read_metadata(image).parameters_text or ""
    parameters: dict[str, Any] = {}
    if text:
        parsed = parse_parameters(text)
        parameters = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.fields}
    return {"info": text, "items": chunks, "parameters": parameters}
