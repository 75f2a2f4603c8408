"""Few-step models (SD-Turbo, SDXL-Turbo, LCM and LCM-LoRA) recognised, and the defaults each needs.

Distilled models make a picture in 1-8 steps and were trained without classifier-free guidance. At the usual
25 steps and CFG 7 they are slow for nothing and burn the picture (CFG doubles the UNet's batch and
over-saturates), so the tabs open with the model's own settings instead: Turbo models take 1-4 steps of Euler a on
"trailing" timesteps with CFG off (0), LCM models 4 steps of the LCM sampler with CFG 1 (off). Nothing is forced:
a user may still choose any sampler, steps and CFG scale.

A model is recognised before it loads (the tabs are built first; the model loads on the first generation) from
what is on disk without loading weights: its name (the official ``stabilityai/sd-turbo``, ``sdxl-turbo`` and their
single files ``sd_turbo``, ``sd_xl_turbo_1.0``; any name with ``lcm`` as a word) and its scheduler config (an
``LCMScheduler``, as a model with an LCM-LoRA fused in is saved). Community "turbo" merges are not matched: they
want other settings (often 4-8 steps, CFG 2) that their authors publish.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.schedulers import DEFAULT_SAMPLER
from studio.sources import display_name, looks_local

if TYPE_CHECKING:  # only for hints: the page is built from this module before diffusers loads
    from diffusers import DiffusionPipeline

_TURBO_NAME = re.compile(r"(^|[/_\-. ])sd[_\-]?(xl[_\-]?)?turbo($|[/_\-. ])", re.IGNORECASE)
_LCM_NAME = re.compile(r"(^|[^a-z0-9])lcm($|[^a-z0-9])", re.IGNORECASE)
LCM_SCHEDULER = "LCMScheduler"


@dataclass(frozen=True)
class GenerationDefaults:
    """What the generation tabs open with for a model, and the timestep spacing its base scheduler must use."""

    kind: str
    sampler: str
    num_inference_steps: int
    guidance_scale: float
    timestep_spacing: str | None = None
    """A spacing the base scheduler's config is given at load ("trailing": a one-step schedule must start at the
    last training timestep, pure noise, as Turbo models were distilled to), or None to keep the model's own."""

    @property
    def few_step(self) -> bool:
        return self.kind != STANDARD.kind


STANDARD = GenerationDefaults("standard", DEFAULT_SAMPLER, 25, 7.0)
# Two steps, not the one the Turbo model cards show: image to image and inpainting at the default strength 0.75
# run int(steps * strength) steps, which is none at one step.
TURBO = GenerationDefaults("Turbo", "Euler a", 2, 0.0, timestep_spacing="trailing")
LCM = GenerationDefaults("LCM", "LCM", 4, 1.0)


def recognise(names: Iterable[str], scheduler_class: str | None = None) -> GenerationDefaults:
    """The defaults for a model called ``names`` (its source, its file or folder name, ...) whose scheduler
    config names ``scheduler_class``."""
    names = [name for name in names if name]
    if scheduler_class == LCM_SCHEDULER or any(_LCM_NAME.search(name) for name in names):
        return LCM
    if any(_TURBO_NAME.search(name) for name in names):
        return TURBO
    return STANDARD


def _scheduler_config_file(source: str) -> Path | None:
    """The scheduler config of ``source`` if it is on this machine (a diffusers folder, or a Hub model in the
    local cache); never downloads."""
    if looks_local(source):
        path = Path(source).expanduser() / "scheduler" / "scheduler_config.json"
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "scheduler/scheduler_config.json")
    except (ValueError, OSError):  # not a valid repository id
        return None
    return Path(cached) if isinstance(cached, str) else None


def defaults_for_source(source: str) -> GenerationDefaults:
    """The defaults for the model ``source`` names, from its name and its scheduler config when that is on disk."""
    scheduler_class = None
    config = _scheduler_config_file(source)
    if config is not None:
        try:
            scheduler_class = json.loads(config.read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError):
            scheduler_class = None
    return recognise([source, display_name(source)], scheduler_class)


def defaults_for_pipeline(source: str, pipeline: DiffusionPipeline) -> GenerationDefaults:
    """The defaults for a loaded model: its name and the scheduler it was saved with."""
    return recognise([source, display_name(source)], type(pipeline.scheduler).__name__)


def adapt_scheduler(pipeline: DiffusionPipeline, defaults: GenerationDefaults) -> None:
    """Give the base scheduler the timestep spacing the model needs. Every request's scheduler is built from this
    config (studio/schedulers.py), so every sampler then starts where the model expects."""
    spacing = defaults.timestep_spacing
    scheduler = pipeline.scheduler
    if spacing is not None and scheduler.config.get("timestep_spacing") != spacing:
        pipeline.scheduler = type(scheduler).from_config(scheduler.config, timestep_spacing=spacing)
