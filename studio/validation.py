"""Checks shared by every generation request, each failing with a message that says how to fix the value.

The service calls these once, before any GPU work. Values arrive from the UI, gradio_client or JSON, so a
whole number may come as ``20.0`` and is accepted; ``20.5`` or ``"20"`` is not.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from PIL import Image

from studio.errors import InvalidRequest
from studio.requests import RANDOM_SEED

MAX_SEED = 2**32 - 1
MIN_SIDE = 64
MAX_PROMPT_CHARS = 4000
MAX_GUIDANCE_SCALE = 30.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; set by ``--max-batch``, ``--max-pixels`` and ``--max-steps``."""

    max_batch: int = 8
    max_pixels: int = 1024 * 1024
    max_steps: int = 150
    max_cells: int = 16


def _finite(value: float) -> bool:
    """Not NaN or infinity (a whole number of any size is finite, though ``math.isfinite`` cannot take a huge one)."""
    return not isinstance(value, float) or math.isfinite(value)


def whole_number(name: str, value: object) -> int:
    """``value`` as an int, accepting integral floats (``20.0``) but not ``20.5``, NaN, infinity, strings or
    booleans (JSON parsers hand on ``NaN`` and ``Infinity``, which no rounding turns into a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidRequest(f"{name} must be a whole number, got {value}; try {round(value)}")
    return int(value)


def number(name: str, value: object) -> float:
    """``value`` as a float: a finite number, not NaN, infinity, a string or a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise InvalidRequest(f"{name} must be a number, got {value!r}")
    return float(value)


def check_text(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{name} is {len(value)} characters long; the limit is {MAX_PROMPT_CHARS}. Shorten it.")
    return value


def check_steps(value: object, limits: Limits) -> int:
    steps = whole_number("steps", value)
    if not 1 <= steps <= limits.max_steps:
        raise InvalidRequest(f"steps must be between 1 and {limits.max_steps}, got {steps}")
    return steps


def check_guidance_scale(value: object) -> float:
    scale = number("guidance_scale (CFG scale)", value)
    if not 0 <= scale <= MAX_GUIDANCE_SCALE:
        raise InvalidRequest(
            f"guidance_scale (CFG scale) must be between 0 and {MAX_GUIDANCE_SCALE:g}, got {scale:g}; 5-9 is usual"
        )
    return scale


def _nearest_multiples(value: int) -> str:
    below = value // 8 * 8
    above = below + 8
    return f"{above} or {below}" if below >= MIN_SIDE else str(max(above, MIN_SIDE))


def check_size(width_value: object, height_value: object, limits: Limits) -> tuple[int, int]:
    """Width and height: multiples of 8 (the VAE downsamples by 8), at least 64, at most ``max_pixels`` together."""
    width = whole_number("width", width_value)
    height = whole_number("height", height_value)
    for name, side in (("width", width), ("height", height)):
        if side < MIN_SIDE:
            raise InvalidRequest(f"{name} must be at least {MIN_SIDE}, got {side}")
        if side % 8:
            raise InvalidRequest(f"{name} must be a multiple of 8, got {side}; try {_nearest_multiples(side)}")
    if width * height > limits.max_pixels:
        raise InvalidRequest(
            f"{width}x{height} is {width * height:,} pixels; this studio allows at most {limits.max_pixels:,} "
            f"(--max-pixels). Make the image smaller."
        )
    return width, height


def check_batch_size(value: object, limits: Limits) -> int:
    batch = whole_number("batch_size", value)
    if not 1 <= batch <= limits.max_batch:
        raise InvalidRequest(f"batch_size must be between 1 and {limits.max_batch} (--max-batch), got {batch}")
    return batch


def resolve_seed(value: object, name: str = "seed") -> int:
    """The seed to use: ``-1`` becomes a random seed, anything else must lie in 0..2**32-1 as in A1111."""
    seed = check_seed(value, name)
    return secrets.randbelow(MAX_SEED + 1) if seed == RANDOM_SEED else seed


def check_seed(value: object, name: str = "seed") -> int:
    """A seed as given: ``-1`` (random) or 0..2**32-1, as in A1111."""
    seed = whole_number(name, value)
    if seed != RANDOM_SEED and not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"{name} must be -1 (random) or between 0 and {MAX_SEED}, got {seed}")
    return seed


def check_variation(subseed: object, strength: object) -> tuple[int, float]:
    """A1111's variation seed and strength (0-1). The variation seed is resolved (-1: random) only when the
    strength uses it; at strength 0 it is kept as given, as it changes nothing."""
    fraction = check_fraction("subseed_strength (variation strength)", strength)
    if fraction == 0:
        return check_seed(subseed, "subseed (variation seed)"), 0.0
    return resolve_seed(subseed, "subseed (variation seed)"), fraction


def check_seed_resize(width_value: object, height_value: object, limits: Limits) -> tuple[int, int]:
    """A1111's "Resize seed from" size: (0, 0) for off (either side 0 or less, as A1111's -1), or a size as
    ``check_size`` takes one, whose noise the picture's starting noise is built around."""
    width = whole_number("seed_resize_from_w (resize seed from width)", width_value)
    height = whole_number("seed_resize_from_h (resize seed from height)", height_value)
    if width <= 0 and height <= 0:
        return 0, 0
    if width <= 0 or height <= 0:
        raise InvalidRequest(
            f"resize seed from needs both a width and a height (got {width}x{height}); set both, or both to 0 for off"
        )
    try:
        return check_size(width, height, limits)
    except InvalidRequest as error:
        raise InvalidRequest(f"resize seed from: {error}") from None


MAX_MASK_BLUR = 64
MAX_CLIP_SKIP = 12
"""CLIP ViT-L has 12 layers: clip skip 12 reads the first."""
MAX_PADDING = 256


def check_strength(value: object, steps: int) -> float:
    """Denoising strength in 0..1, high enough that at least one of ``steps`` denoising steps runs."""
    strength = number("strength (denoising strength)", value)
    if not 0 <= strength <= 1:
        raise InvalidRequest(f"strength (denoising strength) must be between 0 and 1, got {strength:g}")
    if int(steps * strength) < 1:
        hint = f"raise strength to at least {1 / steps:.2f}"
        if strength > 0:
            hint += f" or steps to at least {math.ceil(1 / strength)}"
        raise InvalidRequest(f"strength {strength:g} with {steps} steps leaves no denoising step to run; {hint}")
    return strength


def check_clip_skip(value: object) -> int:
    """A1111's clip skip: 1 (the last layer) to 12 (CLIP ViT-L's first)."""
    return check_range("clip_skip", value, 1, MAX_CLIP_SKIP)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of: {', '.join(choices)}; got {value!r}")
    return str(value)


def check_range(name: str, value: object, low: int, high: int) -> int:
    whole = whole_number(name, value)
    if not low <= whole <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {whole}")
    return whole


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false, got {value!r}")
    return value


def check_image(name: str, value: object) -> Image.Image:
    if not isinstance(value, Image.Image):
        raise InvalidRequest(f"{name} is missing: upload an image")
    if value.width < 8 or value.height < 8:
        raise InvalidRequest(f"{name} is {value.width}x{value.height}; it must be at least 8x8 pixels")
    return value


def check_fraction(name: str, value: object, high: float = 1.0) -> float:
    fraction = number(name, value)
    if not 0 <= fraction <= high:
        raise InvalidRequest(f"{name} must be between 0 and {high:g}, got {fraction:g}")
    return fraction
