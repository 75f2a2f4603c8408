"""The AUTOMATIC1111-compatible routes (``/sdapi/v1``, ``/controlnet``) over the studio's service.

Each handler reads the body (FastAPI and the schemas), maps it to the studio's requests, waits its turn in the
REST queue and runs on a worker thread, so the server's event loop stays free for the UI, progress polls and
Stop. Every route requires the caller to be a user when the studio has passwords.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
from fastapi import APIRouter, Body, Depends

from studio.api import responses
from studio.api.auth import Caller
from studio.api.catalog import (
    KnownModels,
    checkpoint_title,
    controlnet_names,
    lora_entries,
    model_entry,
    resolve_checkpoint,
)
from studio.api.controlnet import control_types, module_details
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
from studio.api.scripts import script_info, scripts_list
from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.hires import LATENT_UPSCALERS
from studio.images import PREPROCESSORS
from studio.model_hash import sha256_of, short_hash
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
    # Hash the serving model now, in the background, so that the first client to connect (options, sd-models)
    # does not wait for a large checkpoint to be read.
    threading.Thread(target=sha256_of, args=(studio.manager.source,), name="model-hash", daemon=True).start()

    def facts() -> ServerFacts:
        return ServerFacts(
            studio.service.limits, settings.max_upload_megapixels, controlnet_names(studio)[0], studio.styles
        )

    async def generate(job: A1111Job, body: GenerationBody, user: str | None) -> dict[str, Any]:
        async with board.turn(owner_of(user)):
            outcome = await anyio.to_thread.run_sync(runner.run, job, owner_of(user))
        source = studio.manager.source
        model = outcome.results[0].model if outcome.results else model_name(source)
        return await anyio.to_thread.run_sync(lambda: responses.generation(body, job, outcome, model, model_hash()))

    def model_hash() -> str | None:
        """The serving model's short hash (hashed once; call from a worker thread)."""
        return short_hash(sha256_of(studio.manager.source))

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
        """The models ``sd_model_checkpoint`` may name: the model picker's (the serving model and the loadable
        files of ``--models-dir``) and every model served since, without those that failed to load."""

        def listed() -> list[dict[str, object]]:
            serving = studio.manager.source
            return [model_entry(source, serving) for source in models.sources()]

        return await anyio.to_thread.run_sync(listed)

    @router.post("/sdapi/v1/refresh-checkpoints", tags=["models"])
    async def refresh_checkpoints() -> None:
        """A1111 rescans its models folder here; the studio reads ``--models-dir`` on every listing, so there is
        nothing to do (the route answers so that clients that call it keep working)."""

    @router.get("/sdapi/v1/latent-upscale-modes", tags=["models"])
    async def latent_upscale_modes() -> list[dict[str, str]]:
        """The hires fix's latent upscalers (``hr_upscaler``), in A1111's shape."""
        return [{"name": name} for name in LATENT_UPSCALERS]

    @router.get("/sdapi/v1/face-restorers", tags=["models"])
    async def face_restorers() -> list[dict[str, object]]:
        """None: the studio has no face restoration (``restore_faces`` is refused)."""
        return []

    @router.get("/sdapi/v1/scripts", tags=["models"])
    async def scripts() -> dict[str, list[str]]:
        """The scripts each tab honours (``alwayson_scripts``), by A1111 name."""
        return scripts_list()

    @router.get("/sdapi/v1/script-info", tags=["models"])
    async def scripts_info() -> list[dict[str, object]]:
        """Each script's arguments, in A1111's shape."""
        return script_info()

    @router.get("/sdapi/v1/cmd-flags", tags=["models"])
    async def cmd_flags() -> dict[str, object]:
        """The server's flags that clients read, under A1111's names (no paths: they are the server's own)."""
        return {
            "api": settings.api,
            "nowebui": False,
            "listen": settings.listen,
            "share": settings.share,
            "port": settings.port,
            "lowvram": settings.cpu_offload,
            "medvram": False,
            "no_half": settings.dtype == "float32",
            "no_half_vae": False,
            "disable_safe_unpickle": settings.allow_pickle,
            "api_auth": None,
            "gradio_auth": None,
            "enable_insecure_extension_access": False,
        }

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
        source = studio.manager.source
        sha256 = await anyio.to_thread.run_sync(sha256_of, source)
        return {
            "sd_model_checkpoint": checkpoint_title(source, sha256),
            "sd_checkpoint_hash": sha256,
            "sd_model_hash": short_hash(sha256),
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
        await anyio.to_thread.run_sync(runner.switch, source)

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
    async def controlnet_modules() -> dict[str, object]:
        """The preprocessors, with each one's sliders as the extension describes them (``module_detail``)."""
        return {"module_list": list(PREPROCESSORS), "module_detail": module_details()}

    @router.get("/controlnet/version", tags=["controlnet"])
    async def controlnet_version() -> dict[str, int]:
        """The sd-webui-controlnet API version whose units and routes the studio speaks."""
        return {"version": 2}

    @router.get("/controlnet/settings", tags=["controlnet"])
    async def controlnet_settings() -> dict[str, int]:
        """How many units a request may enable: one here."""
        return {"control_net_unit_count": 1, "control_net_max_models_num": 1}

    @router.get("/controlnet/control_types", tags=["controlnet"])
    async def controlnet_control_types() -> dict[str, object]:
        """The control types (All, Canny) with their modules, models and defaults, so a client can tell what
        the studio's ControlNet is for."""
        return {"control_types": control_types(controlnet_names(studio))}

    return router
