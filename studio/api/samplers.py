"""A1111's sampler and scheduler names, as clients send them, mapped to the studio's samplers.

Since A1111 1.9 the noise schedule is its own field, ``scheduler`` (A1111's twelve schedule types, by name or
label, any case: ``studio/schedules.py``). ``sampler_name="DPM++ 2M", scheduler="Karras"`` is what older versions
(and the studio's sampler menu) call "DPM++ 2M Karras"; both spellings are accepted, and so are A1111's aliases
(``k_euler_a``). No web framework here.
"""

from __future__ import annotations

from studio.errors import InvalidRequest
from studio.schedulers import SAMPLER_NAMES, check_schedule
from studio.schedules import AUTOMATIC, SCHEDULES, schedule_label

ALIASES: dict[str, tuple[str, ...]] = {
    "DPM++ 2M": ("k_dpmpp_2m",),
    "DPM++ 2M Karras": ("k_dpmpp_2m_ka",),
    "DPM++ SDE Karras": ("k_dpmpp_sde_ka",),
    "Euler": ("k_euler",),
    "Euler a": ("k_euler_a", "k_euler_ancestral"),
    "Heun": ("k_heun",),
    "LMS": ("k_lms",),
    "DDIM": ("ddim",),
    "DDPM": ("ddpm",),
    "PNDM": ("PLMS", "plms"),  # Stable Diffusion's PNDM config skips the Runge-Kutta steps: it is PLMS
    "UniPC": ("unipc",),
    "LCM": ("k_lcm",),
}
# Samplers A1111 names without their schedule whose default schedule is Karras.
_KARRAS_BY_DEFAULT = {"DPM++ SDE": "DPM++ SDE Karras"}
_KARRAS = " Karras"


def _canonical(name: str) -> str | None:
    wanted = name.strip().lower()
    for sampler in (*SAMPLER_NAMES, *_KARRAS_BY_DEFAULT):
        if wanted == sampler.lower() or wanted in (alias.lower() for alias in ALIASES.get(sampler, ())):
            return sampler
    return None


def sampler_for(sampler_name: str, scheduler: str | None) -> tuple[str, str]:
    """The studio's sampler and schedule type (label) for A1111's ``sampler_name`` and ``scheduler`` (None or
    "Automatic": the sampler's own schedule). A Karras schedule on a sampler the studio has a Karras name for is
    that name ("DPM++ 2M Karras", Automatic), as before A1111 1.9; any other schedule type goes with the sampler
    (a " Karras" name gives up its Karras for it). A schedule the sampler cannot follow is refused, naming the ones
    it can."""
    sampler = _canonical(sampler_name)
    if sampler is None:
        raise InvalidRequest(f"unknown sampler_name {sampler_name!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
    label = schedule_label(scheduler)
    if sampler in _KARRAS_BY_DEFAULT and label in (AUTOMATIC, "Karras"):
        return _KARRAS_BY_DEFAULT[sampler], AUTOMATIC
    base = _KARRAS_BY_DEFAULT.get(sampler, sampler).removesuffix(_KARRAS)
    if label == "Karras" and f"{base}{_KARRAS}" in SAMPLER_NAMES:
        return f"{base}{_KARRAS}", AUTOMATIC
    if label == AUTOMATIC:
        return sampler, AUTOMATIC
    sampler = base if base in SAMPLER_NAMES else _KARRAS_BY_DEFAULT.get(sampler, sampler)
    return sampler, check_schedule(sampler, label)


def sampler_list() -> list[dict[str, object]]:
    """``GET /sdapi/v1/samplers``: every sampler by its A1111 name, with its aliases."""
    return [{"name": name, "aliases": list(ALIASES.get(name, ())), "options": {}} for name in SAMPLER_NAMES]


_DEFAULT_RHO = {"karras": 7.0, "polyexponential": 1.0}
"""A1111's ``default_rho`` of the schedules that have one (-1 for the others)."""
_NEED_INNER_MODEL = {"uniform", "sgm_uniform", "simple", "normal", "ddim", "beta"}
"""The schedules A1111 computes from the model's own noise levels (``need_inner_model`` in its list)."""


def scheduler_list() -> list[dict[str, object]]:
    """``GET /sdapi/v1/schedulers``: A1111's twelve schedule types, in A1111's shape and order."""
    return [
        {
            "name": schedule.name,
            "label": schedule.label,
            "aliases": list(schedule.aliases) or None,
            "default_rho": _DEFAULT_RHO.get(schedule.name, -1),
            "need_inner_model": schedule.name in _NEED_INNER_MODEL,
        }
        for schedule in SCHEDULES
    ]
