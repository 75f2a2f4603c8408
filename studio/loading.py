"""Turning a model source (Hub id, local diffusers folder, single ``.safetensors`` file) into a pipeline.

Loading fails in many ways a user can fix (a typo, no network, a gated repository, a half-downloaded file), and
diffusers reports most of them as the same ``OSError``. This module turns each into a message that names the
model and says what to do. Only the model manager calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from diffusers import (
    AutoPipelineForText2Image,
    ControlNetModel,
    DiffusionPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from safetensors import SafetensorError, safe_open

from studio.devices import Placement
from studio.errors import ModelLoadError
from studio.micro.location import MICRO_CROSS_ATTENTION_DIM, MICRO_FAMILY, resolve_alias
from studio.model_catalog import unet_family
from studio.sources import display_name, looks_local

log = logging.getLogger(__name__)
_Loaded = TypeVar("_Loaded")

# A key only SDXL single-file checkpoints have (the second, OpenCLIP text encoder).
_SDXL_KEY_PREFIX = "conditioner.embedders.1."
# Like A1111, the studio shows what the model made; not loading the checker also saves 1.2 GB. SDXL
# pipelines have no checker and ignore these (with a logged warning).
_NO_SAFETY_CHECKER = {"safety_checker": None, "requires_safety_checker": False}
_LOCAL_HINT = (
    "point --model at a local diffusers folder or .safetensors file, e.g. python app.py --model ./models/my-model"
)


PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth")


def refuse_pickle(source: str, allow_pickle: bool) -> None:
    """Pickle files can run any code when loaded: refuse them unless ``--allow-pickle`` was given."""
    suffix = Path(source).suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelLoadError(
            f"Could not load model {display_name(source)!r}: {suffix} files are Python pickles, which can run any "
            "code when loaded. Convert it to .safetensors, or start the studio with --allow-pickle if you trust "
            "where it came from."
        )


def _safetensors_only(allow_pickle: bool) -> dict[str, object]:
    """diffusers' switch for folders and Hub models: safetensors files only, unless pickles are allowed."""
    return {} if allow_pickle else {"use_safetensors": True}


@dataclass(frozen=True)
class MemoryOptions:
    """Memory savers from the settings; each trades speed for memory and is off by default."""

    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False


def model_family(pipeline: DiffusionPipeline) -> str:
    """SD 1.x, SD 2.x or SDXL, as users name them, or the studio's own micro model: from the UNet's config where
    it tells, else from the pipeline class and the text encoder's width."""
    if isinstance(pipeline, StableDiffusionXLPipeline):
        return "SDXL"
    unet = getattr(pipeline, "unet", None)
    if unet is not None and unet.config.cross_attention_dim == MICRO_CROSS_ATTENTION_DIM:
        return MICRO_FAMILY
    family = unet_family(unet.config) if unet is not None else None
    if family is not None:
        return family
    text_encoder = getattr(pipeline, "text_encoder", None)
    if text_encoder is not None and getattr(text_encoder.config, "hidden_size", 768) == 1024:
        return "SD 2.x"
    return "SD 1.x"


def _single_file_class(path: Path) -> type[DiffusionPipeline]:
    """Pick the pipeline class of a single-file checkpoint from its tensor names (read without the tensors)."""
    with safe_open(str(path), framework="pt") as checkpoint:
        keys = checkpoint.keys()
    if any(key.startswith(_SDXL_KEY_PREFIX) for key in keys):
        return StableDiffusionXLPipeline
    return StableDiffusionPipeline


def _hub_kwargs(dtype: torch.dtype, offline: bool) -> list[dict[str, object]]:
    """The ways to ask the Hub for a model, best first: the half-size fp16 files when loading in float16 (most
    Stable Diffusion repositories carry them), then the full-precision files."""
    plain: dict[str, object] = {"dtype": dtype, "local_files_only": offline}
    return [{**plain, "variant": "fp16"}, plain] if dtype == torch.float16 else [plain]


def _from_hub(load: Callable[..., _Loaded], source: str, dtype: torch.dtype, offline: bool, **extra: object) -> _Loaded:
    attempts = _hub_kwargs(dtype, offline)
    for kwargs in attempts[:-1]:
        try:
            return load(source, **kwargs, **extra)
        except (OSError, ValueError) as error:
            log.info("no fp16 variant of %s (%s); loading the full-precision files", source, error)
    return load(source, **attempts[-1], **extra)


def _load_local(
    source: str, dtype: torch.dtype, offline: bool, config: str | None, allow_pickle: bool
) -> DiffusionPipeline:
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelLoadError(f"Could not load model {display_name(source)!r}: no such file or folder. Check the path.")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{path.name!r} is a folder but not a diffusers model (it has no model_index.json); "
                f"{_LOCAL_HINT.replace('point --model at', 'point --model at a model folder or')}"
            )
        return AutoPipelineForText2Image.from_pretrained(
            path, dtype=dtype, **_NO_SAFETY_CHECKER, **_safetensors_only(allow_pickle)
        )
    if path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
        refuse_pickle(source, allow_pickle)
        # Without config=, diffusers takes the configs of the checkpoint's architecture from its Hub repository
        # (or the local cache); --model-config names a folder to take them from instead, which works offline.
        pipeline_class = _single_file_class(path)
        extra = {"config": config} if config else {}
        return pipeline_class.from_single_file(str(path), dtype=dtype, local_files_only=offline, **extra)
    raise ModelLoadError(
        f"{path.name!r} is not a model this studio loads: use a diffusers folder or a single-file .safetensors "
        "checkpoint"
    )


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def explain_load_failure(source: str, error: BaseException, offline: bool) -> ModelLoadError:
    """A ``ModelLoadError`` that says why ``source`` did not load and how to fix it."""
    if isinstance(error, ModelLoadError):
        return error
    name = display_name(source)
    causes = _causes(error)
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            return ModelLoadError(f"Could not load model {name!r}: no such file or folder. Check the path.")
        if isinstance(error, SafetensorError | ValueError | KeyError) or any(
            isinstance(c, SafetensorError) for c in causes
        ):
            return ModelLoadError(
                f"Could not load model {name!r}: the file is damaged or not a Stable Diffusion checkpoint "
                f"({type(error).__name__}). Download it again or choose another model."
            )
        return ModelLoadError(
            f"Could not load model {name!r} ({type(error).__name__}); the server log has the details."
        )
    if any(isinstance(c, GatedRepoError) for c in causes):
        return ModelLoadError(
            f"Could not load model {name!r}: it is gated on the Hugging Face Hub. Accept its license on "
            f"https://huggingface.co/{source}, log in with `hf auth login`, and try again; or {_LOCAL_HINT}."
        )
    if any(isinstance(c, RepositoryNotFoundError) for c in causes):
        return ModelLoadError(
            f"Could not load model {name!r}: there is no such model on the Hugging Face Hub (or it is private). "
            f"Check the name, or {_LOCAL_HINT}."
        )
    if offline:
        return ModelLoadError(
            f"Could not load model {name!r}: it is not in the local Hugging Face cache, and the studio is offline "
            f"(--offline or HF_HUB_OFFLINE=1), so it cannot be downloaded. Download it once with network access, "
            f"or {_LOCAL_HINT}."
        )
    return ModelLoadError(
        f"Could not load model {name!r}: it could not be downloaded from the Hugging Face Hub and is not in the "
        f"local cache (is the network reachable?). Download it once with network access, or {_LOCAL_HINT}."
    )


def load_pipeline(
    source: str,
    placement: Placement,
    offline: bool,
    memory: MemoryOptions,
    single_file_config: str | None = None,
    allow_pickle: bool = False,
) -> DiffusionPipeline:
    """Load ``source`` as a text-to-image pipeline on ``placement``, with the memory options applied.
    ``single_file_config`` (a diffusers folder or Hub id) describes a single-file checkpoint's architecture.

    Raises ``ModelLoadError`` with a message for the user whatever went wrong in loading.
    """
    source = resolve_alias(source)
    try:
        if looks_local(source):
            pipeline = _load_local(source, placement.dtype, offline, single_file_config, allow_pickle)
        else:
            pipeline = _from_hub(
                AutoPipelineForText2Image.from_pretrained,
                source,
                placement.dtype,
                offline,
                **_NO_SAFETY_CHECKER,
                **_safetensors_only(allow_pickle),
            )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, ModelLoadError) as error:
        log.warning("loading %s failed", source, exc_info=not isinstance(error, ModelLoadError))
        raise explain_load_failure(source, error, offline) from error
    if memory.attention_slicing:
        pipeline.enable_attention_slicing()
    if memory.vae_slicing:
        pipeline.vae.enable_slicing()
    if memory.vae_tiling:
        pipeline.vae.enable_tiling()
    try:
        if memory.cpu_offload and placement.device.type != "cpu":
            pipeline.enable_model_cpu_offload(device=placement.device)
        else:
            pipeline.to(placement.device)
    except RuntimeError as error:
        raise ModelLoadError(
            f"Model {display_name(source)!r} loaded but did not fit on {placement.device.type}. "
            "Try --cpu-offload, or a smaller model."
        ) from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _load_unet(source: str, dtype: torch.dtype, offline: bool, allow_pickle: bool) -> UNet2DConditionModel:
    source = resolve_alias(source)
    safe = _safetensors_only(allow_pickle)
    if not looks_local(source):
        return _from_hub(UNet2DConditionModel.from_pretrained, source, dtype, offline, subfolder="unet", **safe)
    refuse_pickle(source, allow_pickle)
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelLoadError(f"Could not load model {display_name(source)!r}: no such file or folder. Check the path.")
    if path.is_file() and path.suffix == ".safetensors":
        single_file_class = (
            StableDiffusionXLInpaintPipeline
            if _single_file_class(path) is StableDiffusionXLPipeline
            else StableDiffusionInpaintPipeline
        )
        return single_file_class.from_single_file(str(path), dtype=dtype).unet
    if not (path / "unet").is_dir():
        raise ModelLoadError(f"{display_name(source)!r} is not a diffusers model folder with a unet/ subfolder")
    return UNet2DConditionModel.from_pretrained(path, subfolder="unet", dtype=dtype, **safe)


def load_inpaint_unet(
    source: str, placement: Placement, offline: bool, allow_pickle: bool = False
) -> UNet2DConditionModel:
    """The UNet of an inpainting model (Hub id, folder or single file), on ``placement``."""
    try:
        unet = _load_unet(source, placement.dtype, offline, allow_pickle)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, ModelLoadError) as error:
        log.warning("loading the inpainting UNet of %s failed", source, exc_info=not isinstance(error, ModelLoadError))
        raise explain_load_failure(source, error, offline) from error
    return unet.to(placement.device)


def _load_controlnet(source: str, dtype: torch.dtype, offline: bool, allow_pickle: bool) -> ControlNetModel:
    source = resolve_alias(source)
    safe = _safetensors_only(allow_pickle)
    if not looks_local(source):
        return _from_hub(ControlNetModel.from_pretrained, source, dtype, offline, **safe)
    refuse_pickle(source, allow_pickle)
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"Could not load ControlNet {display_name(source)!r}: no such file or folder. Check the path."
        )
    if path.is_file() and path.suffix == ".safetensors":
        return ControlNetModel.from_single_file(str(path), dtype=dtype)
    return ControlNetModel.from_pretrained(path, dtype=dtype, **safe)


def load_controlnet(source: str, placement: Placement, offline: bool, allow_pickle: bool = False) -> ControlNetModel:
    """A ControlNet (Hub id, folder or single file), on ``placement``."""
    try:
        controlnet = _load_controlnet(source, placement.dtype, offline, allow_pickle)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, ModelLoadError) as error:
        log.warning("loading the ControlNet %s failed", source, exc_info=not isinstance(error, ModelLoadError))
        raise explain_load_failure(source, error, offline) from error
    return controlnet.to(placement.device)
