"""The AUTOMATIC1111-compatible routes (``/sdapi/v1``, ``/controlnet``) over the studio's service.

Each handler reads the body (FastAPI and the schemas), maps it to the studio's requests, waits its turn in the
REST queue and runs on a worker thread, so the server's event loop stays free for the UI, progress polls and
Stop. Every route requires the caller to be a user when the studio has passwords.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Body, Depends

from studio.api import responses
from studio.api.auth import Caller
from studio.api.catalog import KnownModels, controlnet_names, lora_entries, model_entry, resolve_checkpoint
from studio.api.errors import StudioRoute
from studio.api.images import decode_image
from studio.api.mapping import A1111Job, ServerFacts, img2img_job, txt2img_job
from studio.api.memory import memory_report
from studio.api.progress import JobBoard
from studio.api.runner import Runner
from studio.api.samplers import sampler_list, scheduler_list
from studio.api.schemas import (
    GenerationBody,
    GenerationResponse,
    ImageBody,
    Img2ImgBody,
    PngInfoResponse,
    ProgressResponse,
    Txt2ImgBody,
)
from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.images import PREPROCESSORS
from studio.service import model_name


def owner_of(user: str | None) -> str:
    """The Stop-flag owner of a REST caller: their user name, in a namespace of its own (never a UI session)."""
    return f"a1111:{user or 'anonymous'}"


def build_router(studio: Studio) -> APIRouter:
    """Every A1111-compatible route for ``studio``, to include in the studio's server app."""
    caller = Caller(studio.settings.auth)
    router = APIRouter(route_class=StudioRoute, dependencies=[Depends(caller)])
    board = JobBoard(studio.waiting)
    models = KnownModels(studio)
    runner = Runner(studio, board, models)
    settings = studio.settings

    def facts() -> ServerFacts:
        return ServerFacts(
            studio.service.limits, settings.max_upload_megapixels, controlnet_names(studio)[0], studio.styles
        )

    async def generate(job: A1111Job, body: GenerationBody, user: str | None) -> dict[str, Any]:
        async with board.turn(owner_of(user)):
            outcome = await anyio.to_thread.run_sync(runner.run, job, owner_of(user))
        model = outcome.results[0].model if outcome.results else model_name(studio.manager.source)
        return await anyio.to_thread.run_sync(responses.generation, body, job, outcome, model)

    @router.post("/sdapi/v1/txt2img", response_model=GenerationResponse, tags=["generation"])
    async def txt2img(body: Txt2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        """Text to image; with an enabled unit in ``alwayson_scripts.controlnet.args``, Canny ControlNet."""
        job = await anyio.to_thread.run_sync(txt2img_job, body, facts())
        return await generate(job, body, user)

    @router.post("/sdapi/v1/img2img", response_model=GenerationResponse, tags=["generation"])
    async def img2img(body: Img2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        """Image to image from ``init_images[0]``; with a ``mask``, inpainting (white = repaint)."""
        job = await anyio.to_thread.run_sync(img2img_job, body, facts())
        return await generate(job, body, user)

    @router.get("/sdapi/v1/progress", response_model=ProgressResponse, tags=["jobs"])
    async def progress(skip_current_image: bool = False, user: str | None = Depends(caller)) -> dict[str, Any]:
        """The caller's running job: steps, fraction, time left and the latest live preview."""
        owner = owner_of(user)
        tracker, waiting = board.running_for(owner), board.waiting_for(owner)
        # Encoding the preview is pixel work: off the event loop, like every other.
        return await anyio.to_thread.run_sync(responses.progress, tracker, waiting, not skip_current_image)

    @router.post("/sdapi/v1/interrupt", tags=["jobs"])
    async def interrupt(user: str | None = Depends(caller)) -> dict[str, bool]:
        """Stop the caller's running job at its next denoising step (other users' jobs run on)."""
        owner = owner_of(user)
        board.mark_interrupted(owner)
        return {"interrupted": studio.cancels.cancel(owner)}

    @router.get("/sdapi/v1/sd-models", tags=["models"])
    async def sd_models() -> list[dict[str, object]]:
        """The models ``sd_model_checkpoint`` may name."""
        return [model_entry(source) for source in models.sources()]

    @router.get("/sdapi/v1/loras", tags=["models"])
    async def loras() -> list[dict[str, object]]:
        """The LoRAs prompts may name as ``<lora:name:weight>`` (the files of ``--lora-dir``)."""
        return await anyio.to_thread.run_sync(lora_entries, studio.service.loras)

    @router.post("/sdapi/v1/refresh-loras", tags=["models"])
    async def refresh_loras() -> None:
        """A1111 rescans its LoRA folder here; the studio reads the folder on every request, so there is nothing
        to do (the route answers so that clients that call it keep working)."""

    @router.post("/sdapi/v1/refresh-embeddings", tags=["models"])
    async def refresh_embeddings() -> None:
        """Give the loaded model the files put in ``--embeddings-dir`` since it loaded, as A1111 rescans its
        folder here (a model not loaded yet reads the folder when it loads)."""
        await anyio.to_thread.run_sync(studio.system.refresh_embeddings)

    @router.get("/sdapi/v1/embeddings", tags=["models"])
    async def embeddings() -> dict[str, dict[str, dict[str, object]]]:
        """The textual inversion embeddings the loaded model took from ``--embeddings-dir`` (loading the model
        first if it is not yet), and the files it skipped, with why."""
        model = await anyio.to_thread.run_sync(studio.manager.current)
        loaded = {
            name: {
                "step": None,
                "sd_checkpoint": None,
                "sd_checkpoint_name": None,
                "shape": e.width,
                "vectors": e.vectors,
            }
            for name, e in model.embeddings.loaded.items()
        }
        skipped = {name: {"reason": reason} for name, reason in model.embeddings.skipped.items()}
        return {"loaded": loaded, "skipped": skipped}

    @router.get("/sdapi/v1/prompt-styles", tags=["models"])
    async def prompt_styles() -> list[dict[str, str]]:
        """The styles ``styles`` may name (the studio's styles.csv, ``--styles``)."""
        styles = await anyio.to_thread.run_sync(studio.styles.styles)
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in styles.values()]

    @router.get("/sdapi/v1/samplers", tags=["models"])
    async def samplers() -> list[dict[str, object]]:
        return sampler_list()

    @router.get("/sdapi/v1/schedulers", tags=["models"])
    async def schedulers() -> list[dict[str, object]]:
        return scheduler_list()

    @router.get("/sdapi/v1/options", tags=["models"])
    async def get_options() -> dict[str, Any]:
        """The options the studio has, under A1111's names."""
        return {
            "sd_model_checkpoint": model_name(studio.manager.source),
            "sd_checkpoint_hash": None,
            "samples_save": settings.save_outputs,
            "samples_format": "png",
            "live_previews_enable": settings.preview_every > 0,
            "show_progress_every_n_steps": settings.preview_every,
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "eta_noise_seed_delta": 0,
        }

    @router.post("/sdapi/v1/options", tags=["models"])
    async def set_options(options: dict[str, Any] = Body(...)) -> None:  # noqa: B008
        """``sd_model_checkpoint`` switches the model for everyone (if it cannot load, the old one keeps
        serving and the answer says why). Other options are fixed by the server's flags and are ignored, but for a
        clip skip other than 1, which would change every later picture: it is refused with where to send it."""
        clip_skip = options.get("CLIP_stop_at_last_layers", 1)
        if clip_skip != 1:
            raise InvalidRequest(
                f"CLIP_stop_at_last_layers {clip_skip!r} is not set for the whole server here (other users share "
                "it): send it with each generation, in override_settings"
            )
        wanted = options.get("sd_model_checkpoint")
        if wanted is None:
            return
        if not isinstance(wanted, str):
            raise InvalidRequest("sd_model_checkpoint must be a model name from the sdapi/v1/sd-models route")
        source = resolve_checkpoint(wanted, models.sources())
        await anyio.to_thread.run_sync(studio.manager.switch, source)

    @router.post("/sdapi/v1/png-info", response_model=PngInfoResponse, tags=["images"])
    async def png_info(body: ImageBody) -> dict[str, Any]:
        """The generation parameters a PNG carries (the studio's, or A1111's, Forge's, SD.Next's)."""
        image = await anyio.to_thread.run_sync(decode_image, body.image, "image", settings.max_upload_megapixels)
        return responses.png_info(image)

    @router.get("/sdapi/v1/memory", tags=["models"])
    async def memory() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(memory_report)

    @router.get("/controlnet/model_list", tags=["controlnet"])
    async def controlnet_models() -> dict[str, list[str]]:
        """The ControlNet the studio has (the model family's canny one, or ``--controlnet-model``)."""
        return {"model_list": controlnet_names(studio)}

    @router.get("/controlnet/module_list", tags=["controlnet"])
    async def controlnet_modules() -> dict[str, list[str]]:
        return {"module_list": list(PREPROCESSORS)}

    return router
