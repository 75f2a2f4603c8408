"""A1111 sampler names mapped to diffusers schedulers.

Users arrive knowing the AUTOMATIC1111 names ("DPM++ 2M Karras"), so those are the names in the UI, the API
and the PNG metadata. Each scheduler is built with ``from_config`` from the loaded model's own scheduler
config, so the model's training schedule (beta schedule, prediction type, timestep spacing) is kept and only
the sampling algorithm changes. A fresh scheduler is built for every request: schedulers keep per-call state
(step index, multistep history) and are not safe to share between threads.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.errors import InvalidRequest
from studio.schedules import AUTOMATIC, SCHEDULE_LABELS, schedule_label, schedule_sigmas, spacing_of, training_sigmas

if TYPE_CHECKING:  # the page lists the samplers before diffusers is imported (studio/startup.py)
    from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass(frozen=True)
class Sampler:
    """One entry of the sampler menu: the scheduler class and the config overrides that make it this sampler.
    ``max_steps`` is the most steps it can take, where that is fewer than any model allows."""

    name: str
    scheduler: str
    """The diffusers scheduler class's name: the class itself is imported on first use, not with this module."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    max_steps: int | None = None

    @property
    def scheduler_class(self) -> type[SchedulerMixin]:
        return getattr(importlib.import_module("diffusers"), self.scheduler)  # type: ignore[no-any-return]


SAMPLERS: dict[str, Sampler] = {
    sampler.name: sampler
    for sampler in (
        Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
        Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        Sampler("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
        Sampler("Euler", "EulerDiscreteScheduler"),
        Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
        Sampler("Heun", "HeunDiscreteScheduler"),
        Sampler("LMS", "LMSDiscreteScheduler"),
        Sampler("DDIM", "DDIMScheduler"),
        Sampler("DDPM", "DDPMScheduler"),
        Sampler("PNDM", "PNDMScheduler"),
        Sampler("UniPC", "UniPCMultistepScheduler"),
        # For LCM models and LCM-LoRAs (studio/few_step.py). It picks its steps from a 50-step schedule, the
        # default original_inference_steps, so it cannot take more.
        Sampler("LCM", "LCMScheduler", max_steps=50),
    )
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)
DEFAULT_SAMPLER = "DPM++ 2M Karras"


# Names other tools write for samplers this studio has under another name.
_ALIASES = {
    "plms": "PNDM",  # A1111's PLMS is the pseudo linear multistep method diffusers calls PNDM (without its PRK steps)
    "k_euler_a": "Euler a",  # A1111's old API names
    "k_euler": "Euler",
    "k_heun": "Heun",
    "k_lms": "LMS",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2m_ka": "DPM++ 2M Karras",
    "k_dpmpp_sde_ka": "DPM++ SDE Karras",
    "euler_a": "Euler a",
    "unipc": "UniPC",
}
# Samplers this studio does not have, and the nearest one it has (same family, same noise schedule).
_NEAREST = {
    "dpm++ 2m sde": "DPM++ 2M",
    "dpm++ 2m sde karras": "DPM++ 2M Karras",
    "dpm++ 2m sde exponential": "DPM++ 2M",
    "dpm++ 3m sde": "DPM++ 2M",
    "dpm++ 3m sde karras": "DPM++ 2M Karras",
    "dpm++ sde": "DPM++ SDE Karras",
    "dpm++ 2s a": "Euler a",
    "dpm++ 2s a karras": "Euler a",
    "dpm2": "Heun",
    "dpm2 karras": "Heun",
    "dpm2 a": "Euler a",
    "dpm2 a karras": "Euler a",
    "lms karras": "LMS",
    "restart": "Euler",
}
_SCHEDULE_SUFFIXES = (" karras", " exponential", " polyexponential", " sgm uniform", " uniform", " automatic")


def sampler_from_a1111(name: str) -> tuple[str, str | None]:
    """The sampler of this studio for a sampler name written by A1111, Forge or SD.Next, and a note when it is
    only the nearest one (the image will not be reproduced exactly with it). Unknown names give the default."""
    key = " ".join(str(name).split()).lower()
    by_key = {sampler.lower(): sampler for sampler in SAMPLER_NAMES}
    if key in by_key:
        return by_key[key], None
    if key in _ALIASES:
        return _ALIASES[key], None
    if key in _NEAREST:
        nearest = _NEAREST[key]
        return nearest, f"sampler {name!r} is not available here; {nearest!r} is the nearest"
    for suffix in _SCHEDULE_SUFFIXES:
        if key.endswith(suffix) and key[: -len(suffix)] in by_key:
            nearest = by_key[key[: -len(suffix)]]
            return nearest, f"sampler {name!r} is not available here; {nearest!r} is the nearest"
    return DEFAULT_SAMPLER, f"sampler {name!r} is unknown here; {DEFAULT_SAMPLER!r} was chosen instead"


def check_sampler(name: str) -> Sampler:
    """The sampler called ``name``, or an error listing the names that exist."""
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise InvalidRequest(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLER_NAMES)}") from None


def check_sampler_steps(name: str, steps: int) -> None:
    """Refuse more steps than sampler ``name`` can take, saying how many it can."""
    sampler = check_sampler(name)
    if sampler.max_steps is not None and steps > sampler.max_steps:
        raise InvalidRequest(
            f"the {name} sampler takes at most {sampler.max_steps} steps (it is made for 2-8), got {steps}; "
            "lower the steps or choose another sampler"
        )


_ENDS_AT_LOWEST_LEVEL = ("EulerDiscreteScheduler", "DPMSolverMultistepScheduler")
"""Schedulers whose ``final_sigmas_type="sigma_min"`` ends at the model's lowest training level, as KL Optimal
does; the others end it at 0 (UniPC's "sigma_min" repeats the last level instead)."""


def _parameters(sampler: Sampler) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(sampler.scheduler_class.__init__).parameters


def follows_sigmas(sampler: Sampler) -> bool:
    """Whether the sampler's scheduler takes a list of noise levels (it has Karras sigmas): then it can follow
    every A1111 schedule type exactly."""
    return "use_karras_sigmas" in _parameters(sampler)


def schedules_for(name: str) -> tuple[str, ...]:
    """The A1111 schedule types (labels) sampler ``name`` can follow: every one where its scheduler takes noise
    levels; the timestep spacings where it steps on whole timesteps; only its own (Automatic) for LCM, whose
    schedule is the one it was distilled for."""
    sampler = check_sampler(name)
    if follows_sigmas(sampler):
        return SCHEDULE_LABELS
    if sampler.scheduler == "LCMScheduler":
        return (AUTOMATIC,)
    return tuple(label for label in SCHEDULE_LABELS if label == AUTOMATIC or spacing_of(label) is not None)


def check_schedule(name: str, schedule: object) -> str:
    """The label of schedule type ``schedule`` for sampler ``name``, or an error naming the ones it can follow."""
    label = schedule_label(schedule)
    usable = schedules_for(name)
    if label not in usable:
        raise InvalidRequest(
            f"the {name} sampler cannot follow the {label} schedule here; with {name} choose one of: "
            f"{', '.join(usable)} (or a sampler such as Euler or DPM++ 2M, which follow every schedule type)"
        )
    return label


def build_scheduler(
    name: str,
    model_config: Mapping[str, Any],
    seeds: Sequence[int],
    schedule: str = AUTOMATIC,
    *,
    sdxl: bool = False,
) -> SchedulerMixin:
    """A new scheduler for sampler ``name`` and A1111 schedule type ``schedule`` that keeps the training schedule
    in ``model_config`` (``sdxl`` picks the SDXL table of Align Your Steps).

    ``seeds`` holds the seed of each image of the batch. Most samplers draw their noise from the per-image
    generators the pipeline is given, but the SDE samplers draw it from a Brownian tree seeded at build time;
    without one seed per image they would pick a random one and never reproduce.
    """
    sampler = check_sampler(name)
    label = check_schedule(name, schedule)
    overrides = dict(sampler.overrides)
    parameters = _parameters(sampler)
    if "noise_sampler_seed" in parameters:
        overrides["noise_sampler_seed"] = list(seeds)
    if label != AUTOMATIC and follows_sigmas(sampler):
        overrides.update(use_karras_sigmas=True, use_exponential_sigmas=False, use_beta_sigmas=False)
        if label == "KL Optimal" and sampler.scheduler in _ENDS_AT_LOWEST_LEVEL:
            overrides["final_sigmas_type"] = "sigma_min"  # KL Optimal ends at the lowest level, not at 0
    elif label != AUTOMATIC:
        overrides["timestep_spacing"] = spacing_of(label)
        if label == "DDIM":
            overrides["steps_offset"] = 1  # A1111's DDIM schedule starts at timestep 1
    scheduler = sampler.scheduler_class.from_config(dict(model_config), **overrides)
    if label != AUTOMATIC and follows_sigmas(sampler):
        _follow(scheduler, label, sdxl)
    return scheduler


def _follow(scheduler: SchedulerMixin, label: str, sdxl: bool) -> None:
    """Make ``scheduler`` (a request's own, built with Karras sigmas on) visit schedule ``label``'s noise levels.

    Each of these schedulers computes its levels in ``_convert_to_karras`` and derives its timesteps, its
    second-order repeats and its final level from them; handing it A1111's levels there keeps all of that
    diffusers' own. (That method is private to diffusers; tests/test_schedules.py checks every sampler's levels
    against A1111's formulas, so a change in diffusers shows there.)"""
    train = training_sigmas(scheduler.alphas_cumprod.numpy())

    def a1111_levels(in_sigmas: Any = None, num_inference_steps: int | None = None) -> Any:
        steps = int(num_inference_steps or scheduler.num_inference_steps)
        return schedule_sigmas(label, steps, train, sdxl=sdxl)[:-1]  # the scheduler appends its final level

    scheduler._convert_to_karras = a1111_levels  # type: ignore[method-assign]
