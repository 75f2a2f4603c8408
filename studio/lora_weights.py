"""LoRAs put on a job's pipeline for that job only, with diffusers' PEFT integration, and taken off after it.

Every user shares the one copy of the base weights, so a LoRA must never outlive the request that asked for it.
With ``--compile`` a LoRA job runs its UNet eagerly, on the separate attention projections (``plain_forward``), and
the compiled, fused UNet serves the next job without a LoRA unchanged.
The model manager calls ``applied`` while it holds the GPU lock: the adapters are injected just before the
pipeline runs and removed (``recurse_remove_peft_layers`` puts the original layers back) before the lock is
released. Nothing is fused into the base weights, so the next request without a LoRA runs on exactly the weights
it ran on before, bit for bit. Injecting costs a fraction of a second per LoRA and only requests with LoRAs pay it.

What is cached is the LoRA file read and converted to diffusers' layout (kohya/A1111 files are renamed on the way,
with their alphas), a few files at most, so asking for the same LoRA again does not read and convert it again.

The UNet's part goes through diffusers (``load_lora_into_unet``). The text encoders' part is injected with peft
directly, as diffusers does it for its own models: diffusers hands text encoders to transformers' PEFT integration,
which refuses the peft releases current at the time of writing for transformers 5.x. The result is the same LoRA
layers on the same modules.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, is_peft_available
from diffusers.utils.peft_utils import get_peft_kwargs, recurse_remove_peft_layers
from safetensors import SafetensorError

from studio.errors import InvalidRequest
from studio.fast_paths import plain_forward
from studio.loras import AppliedLora

log = logging.getLogger(__name__)

DEFAULT_CACHED_FILES = 4
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_TEXT_ENCODER_TARGETS = (".q_proj", ".k_proj", ".v_proj", ".out_proj", ".fc1", ".fc2")


@dataclass(frozen=True)
class _Converted:
    """A LoRA file in diffusers' layout: tensors by ``unet.``/``text_encoder.`` key, kohya alphas, PEFT metadata."""

    state_dict: dict[str, torch.Tensor]
    alphas: dict[str, float] | None
    metadata: dict[str, Any] | None
    size: int


@dataclass(frozen=True)
class CachedLora:
    """What the memory status shows of a cached LoRA file."""

    name: str
    size: int


class LoraWeights:
    """Applies LoRAs to pipelines, one job at a time, keeping the last few files read. Thread-safe."""

    def __init__(self, max_files: int = DEFAULT_CACHED_FILES) -> None:
        self.max_files = max_files
        self._files: OrderedDict[tuple[Any, ...], tuple[str, _Converted]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self) -> list[CachedLora]:
        with self._lock:
            return [CachedLora(name, converted.size) for name, converted in self._files.values()]

    def clear(self) -> None:
        with self._lock:
            self._files.clear()

    def _converted(self, pipeline: DiffusionPipeline, lora: AppliedLora) -> _Converted:
        """The file in diffusers' layout for ``pipeline``'s family (SD and SDXL files convert differently)."""
        stat = lora.file.path.stat()
        key = (lora.file.path, stat.st_size, stat.st_mtime_ns, type(pipeline).lora_state_dict)
        with self._lock:
            hit = self._files.get(key)
            if hit is not None:
                self._files.move_to_end(key)
                return hit[1]
        try:
            state_dict, alphas, metadata = pipeline.lora_state_dict(str(lora.file.path), return_lora_metadata=True)
        except (OSError, SafetensorError) as error:
            raise InvalidRequest(
                f"LoRA {lora.file.name!r} could not be read ({type(error).__name__}): the file is damaged or not a "
                "LoRA. Download it again."
            ) from error
        except (ValueError, KeyError) as error:
            raise InvalidRequest(
                f"LoRA {lora.file.name!r} is not in a LoRA format diffusers reads ({error}). Only LoRA "
                ".safetensors files (kohya/A1111 or diffusers layout) are supported."
            ) from error
        size = sum(t.numel() * t.element_size() for t in state_dict.values())
        converted = _Converted(state_dict, alphas, metadata, size)
        with self._lock:
            self._files[key] = (lora.file.name, converted)
            while len(self._files) > self.max_files:
                self._files.popitem(last=False)
        return converted

    @contextmanager
    def applied(self, pipeline: DiffusionPipeline, loras: Sequence[AppliedLora], family: str) -> Iterator[None]:
        """``pipeline`` (and the modules it shares) with ``loras`` at their weights for the block, and exactly as
        before once it ends, whatever happens inside."""
        if not loras:
            yield
            return
        if not is_peft_available():
            raise InvalidRequest("LoRAs need the peft package: pip install -r requirements.txt, then restart")
        names = [f"studio_lora_{index}" for index in range(len(loras))]
        # peft freezes every base weight it finds (requires_grad=False); put the flags back afterwards, or the
        # compiled UNet's guards would fail on them and every shape would compile again.
        grad_flags = [(p, p.requires_grad) for c in _lora_components(pipeline) for p in c.parameters()]
        with plain_forward(pipeline.unet):  # --compile: this job runs eagerly on the separate attention projections
            try:
                for lora, name in zip(loras, names, strict=True):
                    self._load(pipeline, lora, name, family)
                for component in _lora_components(pipeline):
                    active = [n for n in names if n in _adapters_of(component)]
                    weights = [lora.weight for lora, n in zip(loras, names, strict=True) if n in active]
                    _set_weights(component, active, weights)
                yield
            finally:
                remove_loras(pipeline)
                for parameter, flag in grad_flags:
                    parameter.requires_grad_(flag)

    def _load(self, pipeline: DiffusionPipeline, lora: AppliedLora, name: str, family: str) -> None:
        converted = self._converted(pipeline, lora)
        misfit = InvalidRequest(
            f"LoRA {lora.file.name!r} does not fit the loaded model ({family}): it was made for another model "
            f"family. Use a LoRA made for {family}, or switch to a model of the LoRA's family."
        )
        try:
            pipeline.load_lora_into_unet(
                dict(converted.state_dict),
                network_alphas=converted.alphas,
                unet=pipeline.unet,
                adapter_name=name,
                _pipeline=pipeline,
                metadata=converted.metadata,
            )
            for attribute in _TEXT_ENCODERS:
                encoder = getattr(pipeline, attribute, None)
                if encoder is not None:
                    _load_into_text_encoder(encoder, converted, attribute, name)
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            log.info("LoRA %s did not load: %s", lora.file.name, error)
            raise misfit from error
        if not any(name in _adapters_of(component) for component in _lora_components(pipeline)):
            raise misfit


def _load_into_text_encoder(encoder: torch.nn.Module, converted: _Converted, prefix: str, name: str) -> None:
    """The ``prefix`` (``text_encoder``/``text_encoder_2``) part of the LoRA, injected into ``encoder`` with peft."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    state_dict = {
        key.removeprefix(f"{prefix}."): value
        for key, value in converted.state_dict.items()
        if key.startswith(f"{prefix}.")
    }
    if not state_dict:
        return
    state_dict = convert_state_dict_to_peft(convert_state_dict_to_diffusers(state_dict))
    if not hasattr(encoder, "text_model"):  # transformers 5 flattened CLIPTextModel; older files name the level
        state_dict = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    ranks = {
        f"{module}.lora_B.weight": state_dict[f"{module}.lora_B.weight"].shape[1]
        for module, _ in encoder.named_modules()
        if module.endswith(_TEXT_ENCODER_TARGETS) and f"{module}.lora_B.weight" in state_dict
    }
    if not ranks:
        raise ValueError(f"no {prefix} layer matches the LoRA's")
    metadata = {
        key.removeprefix(f"{prefix}."): value
        for key, value in (converted.metadata or {}).items()
        if key.startswith(f"{prefix}.")
    }
    alphas = {
        key.removeprefix(f"{prefix}."): value
        for key, value in (converted.alphas or {}).items()
        if key.split(".")[0] == prefix
    }
    config = LoraConfig(**(metadata or get_peft_kwargs(ranks, alphas, state_dict, is_unet=False)))
    device, dtype = next(encoder.parameters()).device, next(encoder.parameters()).dtype
    inject_adapter_in_model(config, encoder, adapter_name=name)
    result = set_peft_model_state_dict(encoder, state_dict, adapter_name=name)
    unexpected = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if unexpected:
        raise ValueError(f"{len(unexpected)} {prefix} LoRA tensors match no layer, e.g. {unexpected[0]}")
    encoder.to(device=device, dtype=dtype)


def _lora_components(pipeline: DiffusionPipeline) -> list[torch.nn.Module]:
    names = ("unet", *_TEXT_ENCODERS)
    return [module for module in (getattr(pipeline, n, None) for n in names) if isinstance(module, torch.nn.Module)]


def _adapters_of(component: torch.nn.Module) -> set[str]:
    """The adapter names injected into ``component``, read from its LoRA layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names: set[str] = set()
    for module in component.modules():
        if isinstance(module, BaseTunerLayer):
            names.update(module.lora_A.keys() if hasattr(module, "lora_A") else ())
    return names


def _set_weights(component: torch.nn.Module, names: list[str], weights: list[float]) -> None:
    """Activate ``names`` on ``component`` at ``weights`` (the LoRA scale of each)."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    if names:
        set_weights_and_activate_adapters(component, names, weights)


def remove_loras(pipeline: DiffusionPipeline) -> None:
    """Take every LoRA layer off the pipeline's UNet and text encoders, putting the original layers back."""
    for component in _lora_components(pipeline):
        recurse_remove_peft_layers(component)
        for attribute in ("peft_config", "_hf_peft_config_loaded"):
            if attribute in vars(component):
                delattr(component, attribute)
