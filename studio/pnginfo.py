"""PNG Info: the generation settings an image carries, ready to fill a tab's fields (no Gradio here).

An image may come from this studio (A1111 text plus our lossless JSON record) or from A1111, Forge or SD.Next (the
A1111 ``parameters`` text alone, in a PNG chunk or in a JPEG/WebP EXIF ``UserComment``). Either way the result is one
``SentSettings``: every value the tabs have a field for, or None where the image does not say, each checked against
this studio's limits, with a note for anything changed on the way (a sampler we do not have, a size off the grid).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from studio.errors import InvalidRequest
from studio.hires import MAX_SCALE, SAME_SAMPLER, UPSCALERS
from studio.metadata import ImageMetadata
from studio.requests import DEFAULT_HR_SCALE, DEFAULT_HR_STRENGTH, DEFAULT_HR_UPSCALER
from studio.schedulers import SAMPLERS, check_schedule, sampler_from_a1111
from studio.schedules import AUTOMATIC, SCHEDULE_LABELS
from studio.soft_inpainting import SoftInpainting, from_fields
from studio.validation import MAX_CLIP_SKIP, MAX_SEED, MIN_SIDE

_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class SentHires:
    """The hires fix an image was made with, as the text to image tab's panel takes it."""

    upscaler: str
    scale: float
    steps: int
    strength: float
    sampler: str = SAME_SAMPLER
    prompt: str = ""
    """The hires prompt; empty for the first pass's."""
    negative_prompt: str = ""


@dataclass(frozen=True)
class SentSettings:
    """What "Send to" puts into a tab. None means the image does not say, so the field keeps its value."""

    prompt: str
    negative_prompt: str
    sampler: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    notes: tuple[str, ...] = ()
    hires: SentHires | None = None
    """None: the image was not hires-fixed (the panel is turned off)."""
    clip_skip: int | None = None
    subseed: int | None = None
    subseed_strength: float | None = None
    """The variation seed and strength; a strength of 0 means it was made without one."""
    seed_resize_from: tuple[int, int] | None = None
    """"Resize seed from" width and height; (0, 0) means it was made without."""
    tiling: bool | None = None
    scheduler: str | None = None
    """A1111's schedule type (label); Automatic when the image names none."""
    soft_inpainting: SoftInpainting | None = None
    """Soft inpainting's settings; None when it was off (or the image does not say)."""


def _float(text: object) -> float | None:
    """A number written as text, or None when it is missing or not a finite number."""
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: object) -> int | None:
    value = _float(text)
    return None if value is None else int(value)


def _side(value: int, largest: int, name: str, notes: list[str]) -> int:
    """A side the size sliders accept: a multiple of 8 between 64 and ``largest``."""
    side = min(max(MIN_SIDE, round(value / 8) * 8), largest)
    if side != value:
        notes.append(f"{name} {value} became {side} (multiples of 8 from {MIN_SIDE} to {largest} here)")
    return side


def settings_from_metadata(meta: ImageMetadata, *, max_steps: int, max_side: int) -> SentSettings | None:
    """The settings ``meta`` holds, within ``max_steps`` and ``max_side``; None when it holds none."""
    if meta.parameters is None and not meta.record:
        return None
    fields: Mapping[str, str] = meta.parameters.fields if meta.parameters else {}
    record = meta.record or {}
    request = record.get("request")
    ours: Mapping[str, Any] = request if isinstance(request, dict) else {}  # our lossless record of the request
    notes: list[str] = []

    prompt = str(ours.get("prompt", meta.parameters.prompt if meta.parameters else ""))
    negative = str(ours.get("negative_prompt", meta.parameters.negative_prompt if meta.parameters else ""))

    sampler, scheduler = _sampling(ours, fields, meta.parameters is not None, notes)

    steps = _int(ours.get("num_inference_steps", fields.get("Steps")))
    if steps is not None and not 1 <= steps <= max_steps:
        clamped = min(max(1, steps), max_steps)
        notes.append(f"Steps {steps} became {clamped} (this studio allows 1 to {max_steps}, --max-steps)")
        steps = clamped

    guidance = _float(ours.get("guidance_scale", fields.get("CFG scale")))
    seed = _int(record.get("seed", fields.get("Seed")))

    width: int | None = None
    height: int | None = None
    size = _SIZE.match(fields.get("Size", ""))
    if "width" in ours and "height" in ours:
        width, height = _int(ours["width"]), _int(ours["height"])
    elif size:
        width, height = int(size.group(1)), int(size.group(2))
    if width is not None and height is not None:
        width = _side(width, max_side, "Width", notes)
        height = _side(height, max_side, "Height", notes)

    strength = _float(ours.get("strength", fields.get("Denoising strength")))
    if strength is not None and not 0 <= strength <= 1:
        notes.append(f"Denoising strength {strength} is outside 0-1 and was left as it was")
        strength = None

    hires = _hires(ours, fields, width, strength, max_steps, notes)

    # A1111 writes "Clip skip" only when it is not 1, so parameters without it mean 1.
    clip_skip = _int(ours.get("clip_skip", fields.get("Clip skip", 1 if meta.parameters else None)))
    if clip_skip is not None and not 1 <= clip_skip <= MAX_CLIP_SKIP:
        notes.append(f"Clip skip {clip_skip} became 1 (1 to {MAX_CLIP_SKIP} here)")
        clip_skip = 1

    subseed, subseed_strength = _variation(record, ours, fields, meta.parameters is not None, notes)
    seed_resize_from = _seed_resize(ours, fields, meta.parameters is not None, max_side, notes)
    # A1111 writes "Tiling: True" only for a tiled picture.
    tiling = ours.get("tiling", fields.get("Tiling", "False" if meta.parameters else None))

    return SentSettings(
        prompt=prompt,
        negative_prompt=negative,
        sampler=sampler,
        steps=steps,
        guidance_scale=guidance,
        seed=seed,
        width=width,
        height=height,
        strength=strength,
        hires=hires,
        clip_skip=clip_skip,
        subseed=subseed,
        subseed_strength=subseed_strength,
        seed_resize_from=seed_resize_from,
        tiling=None if tiling is None else str(tiling).strip().lower() == "true",
        scheduler=scheduler,
        soft_inpainting=_soft_inpainting(ours, fields),
        notes=tuple(notes),
    )


def _sampling(
    ours: Mapping[str, Any], fields: Mapping[str, str], has_text: bool, notes: list[str]
) -> tuple[str | None, str | None]:
    """The sampler and the schedule type: our record's, or A1111's "Sampler" and "Schedule type" (a schedule
    written into the sampler's name, "Euler Exponential", is taken apart); one this studio lacks is explained."""
    written = ours.get("sampler", fields.get("Sampler"))
    schedule = ours.get("scheduler", fields.get("Schedule type", AUTOMATIC if has_text else None))
    if written is None:
        return None, None
    sampler = str(written)
    if sampler not in SAMPLERS:
        for label in SCHEDULE_LABELS:
            base = sampler[: -len(label)].strip()
            if sampler.lower().endswith(f" {label.lower()}") and sampler_from_a1111(base)[1] is None:
                sampler, schedule = sampler_from_a1111(base)[0], label
                break
        else:
            sampler, note = sampler_from_a1111(sampler)
            if note:
                notes.append(note)
    if schedule is None:
        return sampler, None
    try:
        return sampler, check_schedule(sampler, schedule)
    except InvalidRequest as error:
        notes.append(f"Schedule type: {error}; Automatic is used instead")
        return sampler, AUTOMATIC


def _soft_inpainting(ours: Mapping[str, Any], fields: Mapping[str, str]) -> SoftInpainting | None:
    """Soft inpainting as our record or A1111's "Soft inpainting ..." fields have it (None: off)."""
    record = ours.get("soft_inpainting")
    if isinstance(record, dict):
        try:
            return SoftInpainting(**{key: float(value) for key, value in record.items()})
        except (TypeError, ValueError):
            return None
    return from_fields(fields)


def _variation(
    record: Mapping[str, Any], ours: Mapping[str, Any], fields: Mapping[str, str], has_text: bool, notes: list[str]
) -> tuple[int | None, float | None]:
    """The variation seed of this image (our record's, or A1111's "Variation seed") and its strength; A1111 writes
    them only for a variation, so parameters without them mean a strength of 0."""
    subseed = _int(record.get("subseed", fields.get("Variation seed")))
    strength = _float(ours.get("subseed_strength", fields.get("Variation seed strength", 0 if has_text else None)))
    if strength is not None and not 0 <= strength <= 1:
        notes.append(f"Variation seed strength {strength:g} is outside 0-1 and became 0")
        strength = 0.0
    if subseed is not None and not 0 <= subseed <= MAX_SEED:
        notes.append(f"Variation seed {subseed} is outside 0-{MAX_SEED} and was left out")
        subseed = None
    return subseed, strength


def _seed_resize(
    ours: Mapping[str, Any], fields: Mapping[str, str], has_text: bool, max_side: int, notes: list[str]
) -> tuple[int, int] | None:
    """The "Resize seed from" size (our record's, or A1111's "Seed resize from: WxH"); A1111 writes it only when it
    is on, so parameters without it mean off, (0, 0)."""
    if "seed_resize_from_w" in ours:
        width, height = _int(ours.get("seed_resize_from_w")) or 0, _int(ours.get("seed_resize_from_h")) or 0
    elif size := _SIZE.match(fields.get("Seed resize from", "")):
        width, height = int(size.group(1)), int(size.group(2))
    else:
        return (0, 0) if has_text else None
    if width <= 0 or height <= 0:
        return 0, 0
    return _side(width, max_side, "Seed resize from width", notes), _side(
        height, max_side, "Seed resize from height", notes
    )


def _hires(
    ours: Mapping[str, Any],
    fields: Mapping[str, str],
    width: int | None,
    strength: float | None,
    max_steps: int,
    notes: list[str],
) -> SentHires | None:
    """The hires fix of our record (``enable_hr``) or of A1111's "Hires upscale/resize/steps/upscaler" fields;
    an upscaler this studio lacks becomes its nearest one here, with a note."""
    if "enable_hr" in ours:
        if ours["enable_hr"] is not True:
            return None
        resize_x = _int(ours.get("hr_resize_x")) or 0
        written: dict[str, object] = {
            "upscaler": ours.get("hr_upscaler"),
            # "resize to" a size: the panel has the factor only, so the width's
            "scale": resize_x / width if resize_x and width else ours.get("hr_scale"),
            "steps": ours.get("hr_second_pass_steps"),
            "strength": ours.get("denoising_strength"),
            "sampler": ours.get("hr_sampler_name"),
            "prompt": ours.get("hr_prompt"),
            "negative_prompt": ours.get("hr_negative_prompt"),
        }
    elif any(key in fields for key in ("Hires upscale", "Hires resize", "Hires upscaler")):
        scale: object = fields.get("Hires upscale")
        resize = _SIZE.match(fields.get("Hires resize", ""))
        if scale is None and resize and width:
            scale = int(resize.group(1)) / width
        written = {"upscaler": fields.get("Hires upscaler"), "scale": scale, "steps": fields.get("Hires steps")}
        written["strength"] = strength
        written["sampler"] = fields.get("Hires sampler")
        written["prompt"] = fields.get("Hires prompt")
        written["negative_prompt"] = fields.get("Hires negative prompt")
    else:
        return None
    upscaler = str(written["upscaler"] or DEFAULT_HR_UPSCALER)
    if upscaler not in UPSCALERS:
        nearest = DEFAULT_HR_UPSCALER if upscaler.lower().startswith("latent") else "Lanczos"
        notes.append(f"Hires upscaler {upscaler!r} is not in this studio; {nearest} is used instead")
        upscaler = nearest
    factor = _float(written["scale"]) or DEFAULT_HR_SCALE
    if not 1 <= factor <= MAX_SCALE:
        clamped = min(max(1.0, factor), MAX_SCALE)
        notes.append(f"Hires upscale {factor:g} became {clamped:g} (1 to {MAX_SCALE:g} here)")
        factor = clamped
    steps = min(max(0, _int(written["steps"]) or 0), max_steps)
    denoise = _float(written["strength"])
    denoise = DEFAULT_HR_STRENGTH if denoise is None or not 0 <= denoise <= 1 else denoise
    sampler = str(written["sampler"] or SAME_SAMPLER)
    if sampler not in (SAME_SAMPLER, *SAMPLERS):
        sampler, note = sampler_from_a1111(sampler)
        if note:
            notes.append(f"Hires sampler: {note}")
    prompts = (value if isinstance(value, str) else "" for value in (written["prompt"], written["negative_prompt"]))
    return SentHires(upscaler, factor, steps, denoise, sampler, *prompts)
