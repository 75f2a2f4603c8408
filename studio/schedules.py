"""A1111's schedule types ("Schedule type" beside the sampler since A1111 1.9) as noise levels diffusers can use.

A1111 picks the noise levels (sigmas) a sampler visits with a schedule function of its own; diffusers picks them
inside each scheduler's ``set_timesteps``. This module holds A1111's twelve schedule types by their names and labels,
computes each one's sigmas from the model's own training noise levels (as A1111's ``modules/sd_schedulers.py`` and
k-diffusion define them, written again here from their formulas), and says which samplers can follow which:

- samplers whose diffusers scheduler takes Karras sigmas (Euler, Heun, LMS, DPM++ 2M, DPM++ SDE, UniPC) follow every
  schedule exactly: ``studio/schedulers.py`` hands them these sigmas where they would compute Karras ones;
- samplers that step on whole training timesteps (Euler a, DDIM, DDPM, PNDM) follow the schedules that are a
  spacing of timesteps (Uniform and Normal: ``linspace``; Simple and SGM Uniform: ``trailing``; DDIM: ``leading``),
  rounded to whole timesteps as those schedulers do;
- LCM keeps the schedule it was distilled for.

Pure numpy (scipy for Beta's distribution); no torch, no diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from studio.errors import InvalidRequest


@dataclass(frozen=True)
class Schedule:
    """One of A1111's schedule types: its API name (``sgm_uniform``), its label (``SGM Uniform``), other
    spellings clients send, and the timestep spacing that expresses it on timestep samplers (None: it cannot)."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()
    spacing: str | None = None


AUTOMATIC = "Automatic"
SCHEDULES: tuple[Schedule, ...] = (
    Schedule("automatic", AUTOMATIC),
    Schedule("uniform", "Uniform", spacing="linspace"),
    Schedule("karras", "Karras"),
    Schedule("exponential", "Exponential"),
    Schedule("polyexponential", "Polyexponential"),
    Schedule("sgm_uniform", "SGM Uniform", ("SGMUniform",), spacing="trailing"),
    Schedule("kl_optimal", "KL Optimal"),
    Schedule("align_your_steps", "Align Your Steps", ("AYS",)),
    Schedule("simple", "Simple", spacing="trailing"),
    Schedule("normal", "Normal", spacing="linspace"),
    Schedule("ddim", "DDIM", ("ddim_uniform",), spacing="leading"),
    Schedule("beta", "Beta"),
)
SCHEDULE_LABELS: tuple[str, ...] = tuple(schedule.label for schedule in SCHEDULES)
_BY_LABEL = {schedule.label: schedule for schedule in SCHEDULES}

KARRAS_RHO = 7.0
"""k-diffusion's (and A1111's) default rho of the Karras schedule."""
POLYEXPONENTIAL_RHO = 1.0
"""A1111's default rho of the polyexponential schedule (with 1 it is the exponential one)."""
BETA_ALPHA = BETA_BETA = 0.6
"""A1111's default shape of the Beta schedule's distribution (``beta_dist_alpha``, ``beta_dist_beta``)."""
ALIGN_YOUR_STEPS = {
    "SD": (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029),
    "SDXL": (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029),
}
"""NVIDIA's published Align Your Steps noise levels for 10 steps (11 levels), for SD 1.5 and SDXL."""


def _key(text: str) -> str:
    return " ".join(str(text).replace("_", " ").split()).lower()


_BY_KEY = {
    _key(spelling): schedule.label
    for schedule in SCHEDULES
    for spelling in (schedule.name, schedule.label, *schedule.aliases)
}


def schedule_label(value: object, field: str = "scheduler") -> str:
    """The label of A1111's schedule type ``value`` (its name or label, any case; None or "" mean Automatic), or
    an error naming the twelve."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return AUTOMATIC
    label = _BY_KEY.get(_key(value)) if isinstance(value, str) else None
    if label is None:
        raise InvalidRequest(f"unknown {field} {value!r}; choose one of: {', '.join(SCHEDULE_LABELS)}")
    return label


def spacing_of(label: str) -> str | None:
    """The timestep spacing that expresses schedule ``label`` on samplers that step on whole timesteps."""
    return _BY_LABEL[label].spacing


def training_sigmas(alphas_cumprod: Sequence[float] | np.ndarray) -> np.ndarray:
    """The model's noise level at each training timestep, sigma_t = sqrt((1 - abar_t) / abar_t), increasing in t."""
    alphas = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - alphas) / alphas)


def schedule_sigmas(label: str, steps: int, train: np.ndarray, *, sdxl: bool = False) -> np.ndarray:
    """The noise levels A1111's schedule ``label`` visits in ``steps`` steps, highest first, ending in 0 (KL
    Optimal ends at the lowest training level, and DDIM may take a step more, as in A1111). Computed once per
    schedule, step count and model schedule."""
    if label == AUTOMATIC:
        raise ValueError("Automatic has no schedule of its own: the sampler's default applies")
    return _cached(label, int(steps), np.asarray(train, dtype=np.float64).tobytes(), sdxl).copy()


@lru_cache(maxsize=256)
def _cached(label: str, steps: int, train_bytes: bytes, sdxl: bool) -> np.ndarray:
    train = np.frombuffer(train_bytes, dtype=np.float64)
    sigmas = _FORMULAS[label](steps, train, sdxl)
    sigmas.setflags(write=False)
    return sigmas


def _sigma_to_t(sigma: np.ndarray | float, train: np.ndarray) -> np.ndarray:
    """The (fractional) training timestep of a noise level: linear in log sigma between neighbouring timesteps."""
    return np.interp(np.log(sigma), np.log(train), np.arange(len(train), dtype=np.float64))


def _t_to_sigma(t: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The noise level at a (fractional) training timestep, the inverse of ``_sigma_to_t``."""
    return np.exp(np.interp(t, np.arange(len(train), dtype=np.float64), np.log(train)))


def _zero_ended(sigmas: np.ndarray | Sequence[float]) -> np.ndarray:
    return np.append(np.asarray(sigmas, dtype=np.float64), 0.0)


def _uniform(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    # k-diffusion's discrete-model schedule: timesteps evenly spaced from the last to the first.
    return _zero_ended(_t_to_sigma(np.linspace(len(train) - 1, 0, steps), train))


def _normal(steps: int, train: np.ndarray, _sdxl: bool, *, sgm: bool = False) -> np.ndarray:
    start, end = _sigma_to_t(train[-1], train), _sigma_to_t(train[0], train)
    timesteps = np.linspace(start, end, steps + 1)[:-1] if sgm else np.linspace(start, end, steps)
    return _zero_ended(_t_to_sigma(timesteps, train))


def _sgm_uniform(steps: int, train: np.ndarray, sdxl: bool) -> np.ndarray:
    return _normal(steps, train, sdxl, sgm=True)


def _karras(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    ramp = np.linspace(0, 1, steps)
    low, high = train[0] ** (1 / KARRAS_RHO), train[-1] ** (1 / KARRAS_RHO)
    return _zero_ended((high + ramp * (low - high)) ** KARRAS_RHO)


def _exponential(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    return _zero_ended(np.exp(np.linspace(math.log(train[-1]), math.log(train[0]), steps)))


def _polyexponential(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    ramp = np.linspace(1, 0, steps) ** POLYEXPONENTIAL_RHO
    low, high = math.log(train[0]), math.log(train[-1])
    return _zero_ended(np.exp(ramp * (high - low) + low))


def _kl_optimal(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    # Evenly spaced in arctan(sigma), from the highest level to the lowest (not to 0).
    fraction = np.arange(steps + 1) / steps
    return np.tan(fraction * math.atan(train[0]) + (1 - fraction) * math.atan(train[-1]))


def _align_your_steps(steps: int, _train: np.ndarray, sdxl: bool) -> np.ndarray:
    table = np.asarray(ALIGN_YOUR_STEPS["SDXL" if sdxl else "SD"], dtype=np.float64)
    if steps == len(table):  # as in A1111: the table as it is when the steps equal its length
        return _zero_ended(table)
    # Otherwise interpolated to ``steps`` levels, linearly in log sigma.
    levels = np.exp(np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, len(table)), np.log(table[::-1])))
    return _zero_ended(levels[::-1])


def _simple(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    stride = len(train) / steps
    return _zero_ended([train[len(train) - 1 - int(step * stride)] for step in range(steps)])


def _ddim(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    stride = max(len(train) // steps, 1)
    return _zero_ended(train[1::stride][::-1])


def _beta(steps: int, train: np.ndarray, _sdxl: bool) -> np.ndarray:
    from scipy.stats import beta  # only this schedule needs scipy

    quantiles = beta.ppf(1 - np.linspace(0, 1, steps), BETA_ALPHA, BETA_BETA)
    return _zero_ended(train[0] + quantiles * (train[-1] - train[0]))


_FORMULAS = {
    "Uniform": _uniform,
    "Karras": _karras,
    "Exponential": _exponential,
    "Polyexponential": _polyexponential,
    "SGM Uniform": _sgm_uniform,
    "KL Optimal": _kl_optimal,
    "Align Your Steps": _align_your_steps,
    "Simple": _simple,
    "Normal": _normal,
    "DDIM": _ddim,
    "Beta": _beta,
}
