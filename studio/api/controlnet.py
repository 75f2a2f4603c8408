"""ControlNet units as the sd-webui-controlnet extension takes them in ``alwayson_scripts.controlnet.args``.

The studio has one ControlNet, Canny (the model family's own, or ``--controlnet-model``), so a unit may ask for
the ``canny`` or ``none`` module and for that model (or "None", as clients send by default). One enabled unit
per request, on txt2img.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.api.images import decode_image
from studio.errors import InvalidRequest
from studio.images import PREPROCESSORS

SCRIPT = "controlnet"
CANNY_DEFAULTS = (100, 200)
"""The extension's canny thresholds (low, high) when a unit leaves them at -1."""

RESIZE_MODES = {
    "just resize": "Just resize",
    "crop and resize": "Crop and resize",
    "inner fit (scale to fit)": "Crop and resize",
    "resize and fill": "Resize and fill",
    "outer fit (shrink to fit)": "Resize and fill",
    "0": "Just resize",
    "1": "Crop and resize",
    "2": "Resize and fill",
}
"""The extension's resize modes (names of its two versions, or their numbers) -> the studio's."""


class UnitBody(BaseModel):
    """One unit. Fields that change nothing here (``processor_res``, ``pixel_perfect``, ``low_vram``...) are
    ignored."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    image: str | dict[str, Any] | None = None
    input_image: str | None = None
    module: str | None = "none"
    model: str | None = "None"
    weight: float = 1.0
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    resize_mode: str | int = Field("Crop and Resize")
    control_mode: str | int = Field("Balanced", description="only Balanced (0): the others reweigh the guidance")


@dataclass(frozen=True)
class ControlNetUnit:
    """A unit, understood: what the studio's ControlNet request needs from it."""

    image: Image.Image
    preprocessor: str
    weight: float
    low_threshold: int
    high_threshold: int
    guidance_start: float
    guidance_end: float
    resize_mode: str


def readable(error: ValidationError, prefix: str) -> str:
    """A pydantic error as one line naming each bad field: ``weight: Input should be a valid number``."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{prefix}{where}: {item['msg']}")
    return "; ".join(parts)


def controlnet_unit(
    scripts: dict[str, Any], controlnet_name: str, max_megapixels: int, *, img2img: bool
) -> ControlNetUnit | None:
    """The enabled unit of ``alwayson_scripts``, or None when there is none. Any other always-on script, a
    module or model the studio does not have, or more than one enabled unit is refused with a message."""
    units: list[Any] = []
    for name, script in scripts.items():
        if name.lower() != SCRIPT:
            raise InvalidRequest(
                f"always-on script {name!r} is not available here; the studio has: controlnet, soft inpainting"
            )
        args = script.get("args", []) if isinstance(script, dict) else None
        if not isinstance(args, list):
            raise InvalidRequest('alwayson_scripts.controlnet must be {"args": [unit, ...]}')
        units.extend(args)
    enabled: list[tuple[int, UnitBody]] = []
    for index, raw in enumerate(units):
        if raw in (None, False, {}):
            continue
        if not isinstance(raw, dict):
            raise InvalidRequest(f"alwayson_scripts.controlnet.args[{index}] must be a unit object (a JSON dict)")
        try:
            unit = UnitBody.model_validate(raw)
        except ValidationError as error:
            raise InvalidRequest(readable(error, f"alwayson_scripts.controlnet.args[{index}].")) from None
        if unit.enabled:
            enabled.append((index, unit))
    if not enabled:
        return None
    if len(enabled) > 1:
        raise InvalidRequest(f"{len(enabled)} enabled ControlNet units; the studio applies one at a time")
    if img2img:
        raise InvalidRequest("ControlNet works with txt2img here; send the unit with a txt2img request")
    index, unit = enabled[0]
    return _understood(unit, f"alwayson_scripts.controlnet.args[{index}]", controlnet_name, max_megapixels)


def _understood(unit: UnitBody, where: str, controlnet_name: str, max_megapixels: int) -> ControlNetUnit:
    module = (unit.module or "none").strip().lower()
    if module not in PREPROCESSORS:
        raise InvalidRequest(f"{where}.module {unit.module!r} is not available; choose one of: canny, none")
    model = (unit.model or "None").strip()
    if model.lower() not in ("", "none") and "canny" not in model.lower() and controlnet_name not in model:
        raise InvalidRequest(
            f"{where}.model {model!r} is not available; this studio has one ControlNet, {controlnet_name} "
            "(the controlnet/model_list route)"
        )
    resize = RESIZE_MODES.get(str(unit.resize_mode).strip().lower())
    if resize is None:
        raise InvalidRequest(
            f"{where}.resize_mode {unit.resize_mode!r} is unknown; use Just Resize, Crop and Resize or Resize and Fill"
        )
    if str(unit.control_mode).strip().lower() not in ("balanced", "0"):
        raise InvalidRequest(f"{where}.control_mode {unit.control_mode!r} is not available; only Balanced (0) is")
    picture = unit.image if unit.image is not None else unit.input_image
    if isinstance(picture, dict):
        picture = picture.get("image")
    # As the extension does: -1 means the module's default, and thresholds are whole numbers.
    low = int(unit.threshold_a) if unit.threshold_a >= 0 else CANNY_DEFAULTS[0]
    high = int(unit.threshold_b) if unit.threshold_b >= 0 else CANNY_DEFAULTS[1]
    return ControlNetUnit(
        image=decode_image(picture, f"{where}.image", max_megapixels),
        preprocessor=module,
        weight=unit.weight,
        low_threshold=low,
        high_threshold=high,
        guidance_start=unit.guidance_start,
        guidance_end=unit.guidance_end,
        resize_mode=resize,
    )


def module_details() -> dict[str, dict[str, Any]]:
    """``/controlnet/module_list``'s ``module_detail``: each preprocessor's sliders (the extension's shape)."""
    resolution = {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8}
    return {
        "none": {"model_free": False, "sliders": []},
        "canny": {
            "model_free": False,
            "sliders": [
                resolution,
                {"name": "Low Threshold", "value": CANNY_DEFAULTS[0], "min": 1, "max": 255, "step": 1},
                {"name": "High Threshold", "value": CANNY_DEFAULTS[1], "min": 1, "max": 255, "step": 1},
            ],
        },
    }


def control_types(models: list[str]) -> dict[str, dict[str, Any]]:
    """``/controlnet/control_types``: the extension's categories for the studio's one kind of ControlNet,
    Canny (defaulting to the canny preprocessor and the studio's model), and All."""
    modules = list(PREPROCESSORS)
    return {
        "All": {
            "module_list": modules,
            "model_list": ["None", *models],
            "default_option": "none",
            "default_model": "None",
        },
        "Canny": {
            "module_list": modules,
            "model_list": ["None", *models],
            "default_option": "canny",
            "default_model": models[0] if models else "None",
        },
    }
