"""A1111's sampler and scheduler names, as clients send them, mapped to the studio's samplers.

Since A1111 1.9 the noise schedule is its own field: ``sampler_name="DPM++ 2M", scheduler="Karras"`` is what
older versions (and the studio) call "DPM++ 2M Karras". Both spellings are accepted, and so are A1111's aliases
(``k_euler_a``). Pure Python: no torch, no web framework.
"""

from __future__ import annotations

from studio.errors import InvalidRequest
from studio.schedulers import SAMPLER_NAMES

SCHEDULERS = {"automatic": "Automatic", "uniform": "Uniform", "karras": "Karras"}
"""The schedule choices the studio has, as A1111's /schedulers names (keys) and labels (values) them."""

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


def sampler_for(sampler_name: str, scheduler: str | None) -> str:
    """The studio's sampler for A1111's ``sampler_name`` and ``scheduler`` (None or "Automatic": the
    sampler's own default schedule)."""
    sampler = _canonical(sampler_name)
    if sampler is None:
        raise InvalidRequest(f"unknown sampler_name {sampler_name!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
    schedule = (scheduler or "automatic").strip().lower()
    schedule = next((key for key, label in SCHEDULERS.items() if schedule in (key, label.lower())), schedule)
    if schedule not in SCHEDULERS:
        raise InvalidRequest(
            f"scheduler {scheduler!r} is not available here; choose one of: {', '.join(SCHEDULERS.values())}"
        )
    base = sampler.removesuffix(_KARRAS)
    karras = _KARRAS_BY_DEFAULT.get(sampler) or f"{base}{_KARRAS}"
    if schedule == "karras" or (schedule == "automatic" and sampler in _KARRAS_BY_DEFAULT):
        if karras not in SAMPLER_NAMES:
            with_karras = ", ".join(name for name in SAMPLER_NAMES if name.endswith(_KARRAS))
            raise InvalidRequest(
                f"{base} has no Karras schedule here; use scheduler Automatic, or one of: {with_karras}"
            )
        return karras
    if schedule == "uniform":
        if base not in SAMPLER_NAMES:
            raise InvalidRequest(f"{sampler} has no Uniform schedule here; use scheduler Karras")
        return base
    return sampler


def sampler_list() -> list[dict[str, object]]:
    """``GET /sdapi/v1/samplers``: every sampler by its A1111 name, with its aliases."""
    return [{"name": name, "aliases": list(ALIASES.get(name, ())), "options": {}} for name in SAMPLER_NAMES]


def scheduler_list() -> list[dict[str, object]]:
    """``GET /sdapi/v1/schedulers``, in A1111's shape."""
    return [
        {"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
        for name, label in SCHEDULERS.items()
    ]
