"""Soft inpainting's settings (A1111 1.8's "Soft inpainting"), their checks and their parameters-text fields.

With soft inpainting the blurred mask is not cut at one half into "repaint" and "keep": each pixel is repainted as
much as the mask says. While denoising, every step blends the sample with the original picture (noised to the
step's level) by a per-pixel weight taken from the mask and the noise level, in the spirit of differential
diffusion: where the mask is faint the original holds on until late in the steps, so edges blend instead of seaming.
The blending itself is ``studio/soft_blend.py``; this module has no torch.

A1111's settings, names and defaults: schedule bias (``mask_blend_power``, 1), preservation strength
(``mask_blend_scale``, 0.5) and transition contrast boost (``inpaint_detail_preservation``, 4). A1111's three
"pixel composite" settings (mask influence 0, difference threshold 0.5, difference contrast 2) are not offered:
the studio pastes the result back through the blurred mask instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.errors import InvalidRequest

SCRIPT_NAME = "soft inpainting"
"""The key A1111 clients use for it in ``alwayson_scripts`` (any case)."""
ENABLED_KEY = "Soft inpainting enabled"
ENABLED_LABEL = "Soft inpainting"


@dataclass(frozen=True)
class Setting:
    """One setting as A1111 shows it: its label, parameters-text key, default and slider range."""

    name: str
    label: str
    key: str
    default: float
    minimum: float
    maximum: float
    step: float
    info: str


SCHEDULE_BIAS = Setting(
    "schedule_bias",
    "Schedule bias",
    "Soft inpainting schedule bias",
    1.0,
    0.0,
    8.0,
    0.1,
    "When the original is kept: below 1 more near the end of the steps, above 1 more at the start.",
)
PRESERVATION_STRENGTH = Setting(
    "preservation_strength",
    "Preservation strength",
    "Soft inpainting preservation strength",
    0.5,
    0.0,
    8.0,
    0.05,
    "How strongly partly masked pixels keep the original: low favours the new picture, high the original.",
)
TRANSITION_CONTRAST = Setting(
    "transition_contrast",
    "Transition contrast boost",
    "Soft inpainting transition contrast boost",
    4.0,
    1.0,
    32.0,
    0.5,
    "Keeps the contrast that blending loses in partly masked pixels: high values may over-saturate.",
)
SETTINGS: tuple[Setting, ...] = (SCHEDULE_BIAS, PRESERVATION_STRENGTH, TRANSITION_CONTRAST)

PIXEL_COMPOSITE_DEFAULTS: tuple[tuple[str, float], ...] = (
    ("mask influence", 0.0),
    ("difference threshold", 0.5),
    ("difference contrast", 2.0),
)
"""A1111's last three script arguments, accepted at their defaults only (the studio composites by the mask)."""


@dataclass(frozen=True)
class SoftInpainting:
    """Soft inpainting's settings (A1111's names in the comments)."""

    schedule_bias: float = SCHEDULE_BIAS.default  # mask_blend_power
    preservation_strength: float = PRESERVATION_STRENGTH.default  # mask_blend_scale
    transition_contrast: float = TRANSITION_CONTRAST.default  # inpaint_detail_preservation

    def fields(self) -> dict[str, object]:
        """The parameters-text fields A1111 writes for it."""
        return {ENABLED_KEY: True, **{setting.key: getattr(self, setting.name) for setting in SETTINGS}}


def check_soft_inpainting(value: object) -> SoftInpainting | None:
    """``value`` (None for off) with each setting within A1111's slider range."""
    if value is None:
        return None
    if not isinstance(value, SoftInpainting):
        raise InvalidRequest(f"soft_inpainting must be soft inpainting settings or None, got {type(value).__name__}")
    checked: dict[str, float] = {}
    for setting in SETTINGS:
        name = f"soft inpainting {setting.label.lower()}"
        number = _number(getattr(value, setting.name), name)
        if not setting.minimum <= number <= setting.maximum:
            raise InvalidRequest(f"{name} must be between {setting.minimum:g} and {setting.maximum:g}, got {number:g}")
        checked[setting.name] = number
    return SoftInpainting(**checked)


def from_script_args(
    args: Sequence[Any], where: str = "alwayson_scripts['soft inpainting'].args"
) -> SoftInpainting | None:
    """A1111's script arguments, in its order: enabled, schedule bias, preservation strength, transition contrast
    boost, mask influence, difference threshold, difference contrast. Missing ones take A1111's defaults; None
    when it is not enabled."""
    if not isinstance(args, Sequence) or isinstance(args, str | bytes):
        raise InvalidRequest(f"{where} must be a list: [enabled, schedule bias, preservation strength, ...]")
    if not args or not _truthy(args[0], f"{where}[0] (enabled)"):
        return None
    values: dict[str, float] = {}
    for index, setting in enumerate(SETTINGS, start=1):
        raw = args[index] if index < len(args) else setting.default
        values[setting.name] = _number(raw, f"{where}[{index}] ({setting.label.lower()})")
    for index, (label, default) in enumerate(PIXEL_COMPOSITE_DEFAULTS, start=len(SETTINGS) + 1):
        if index < len(args) and _number(args[index], f"{where}[{index}] ({label})") != default:
            raise InvalidRequest(
                f"{where}[{index}] ({label}) must be {default:g} here: the studio pastes the result back through "
                f"the blurred mask instead of A1111's pixel composite; send {default:g} or leave it out"
            )
    return check_soft_inpainting(SoftInpainting(**values))


def from_fields(fields: Mapping[str, str]) -> SoftInpainting | None:
    """Soft inpainting as a parameters text records it (None when it was off or the values are unreadable)."""
    if str(fields.get(ENABLED_KEY, "")).strip().lower() != "true":
        return None
    values: dict[str, float] = {}
    for setting in SETTINGS:
        try:
            values[setting.name] = float(fields.get(setting.key, setting.default))
        except ValueError:
            values[setting.name] = setting.default
    try:
        return check_soft_inpainting(SoftInpainting(**values))
    except InvalidRequest:
        return None


def _truthy(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise InvalidRequest(f"{where} must be true or false, got {value!r}")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{where} must be a number, got {value!r}")
    return float(value)
