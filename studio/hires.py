"""Hires. fix, as A1111 has it: compose the picture at the size asked, upscale it, then let image to image redraw
the upscaled picture at ``denoising_strength``, in the same GPU job and on the same weights.

Why: a Stable Diffusion model composes well only near the size it was trained at. Asked straight for 1024x1024,
SD 1.5 repeats its subject; composed at 512x512 and refined at 1024x1024 it keeps one composition and gains
detail. The upscalers are A1111's built-in ones: the latent ones resize the latents the first pass made (no
decode; they need a strength of about 0.5 or more, as in A1111, or the blur of the resize stays), the pixel ones
resize the decoded picture, which image to image encodes again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from studio.errors import InvalidRequest
from studio.loras import parse_loras
from studio.schedulers import SAMPLER_NAMES, SAMPLERS, check_sampler_steps
from studio.validation import (
    Limits,
    check_range,
    check_size,
    check_steps,
    check_strength,
    check_text,
    number,
    whole_number,
)

if TYPE_CHECKING:  # the page's hires controls are built from this module before torch loads
    import torch

LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
"""A1111's latent upscalers: ``torch.nn.functional.interpolate`` mode and antialiasing."""
PIXEL_UPSCALERS: dict[str, Image.Resampling] = {
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
}
"""A1111's built-in picture upscalers (its ESRGAN-family ones are models this studio does not have)."""
UPSCALERS: tuple[str, ...] = (*LATENT_UPSCALERS, *PIXEL_UPSCALERS)
MAX_SCALE = 4.0

SAME_SAMPLER = "Use same sampler"
"""A1111's choice for a second pass that runs with the first pass's sampler."""


@dataclass(frozen=True)
class HiresPass:
    """The second pass of a text to image request: the size it ends at, how it gets there, and how much image to
    image redraws (``steps`` before ``strength`` is applied, as A1111 counts them)."""

    width: int
    height: int
    upscaler: str
    steps: int
    strength: float
    sampler: str
    """The second pass's sampler: the first pass's, or the hires sampler asked for."""
    prompt: str | None = None
    """A1111's hires prompt: the second pass's own prompt (LoRA tags included, as written), or None for the first
    pass's."""
    negative_prompt: str | None = None
    """The second pass's own negative prompt, or None for the first pass's."""

    @property
    def in_latent_space(self) -> bool:
        return self.upscaler in LATENT_UPSCALERS

    @property
    def steps_run(self) -> int:
        """The denoising steps image to image runs: the last ``strength`` of the schedule."""
        return int(self.steps * self.strength)


def target_size(width: int, height: int, scale: float, resize_x: int, resize_y: int) -> tuple[int, int]:
    """The size the hires pass ends at, as A1111 works it out: ``scale`` times the first pass, or "resize to"
    ``resize_x`` by ``resize_y`` (one of them 0: the other follows the picture's aspect). Sides are rounded down
    to multiples of 8."""
    if resize_x == 0 and resize_y == 0:
        x, y = width * scale, height * scale
    elif resize_y == 0:
        x, y = resize_x, resize_x * height / width
    elif resize_x == 0:
        x, y = resize_y * width / height, resize_y
    else:
        x, y = resize_x, resize_y
    return int(x) // 8 * 8, int(y) // 8 * 8


def check_hires(
    *,
    width: int,
    height: int,
    sampler: str,
    steps: int,
    scale: object,
    upscaler: object,
    second_pass_steps: object,
    resize_x: object,
    resize_y: object,
    strength: object,
    limits: Limits,
    second_pass_sampler: object = "",
    prompts: tuple[str, str] = ("", ""),
    second_pass_prompts: tuple[object, object] = ("", ""),
) -> HiresPass:
    """The hires pass a validated text to image request asks for, or an ``InvalidRequest`` saying what to change.
    ``second_pass_sampler`` empty (or A1111's "Use same sampler") runs the second pass with ``sampler``;
    ``second_pass_prompts`` (hires prompt, hires negative prompt) empty or the same as the first pass's
    ``prompts`` run it with those."""
    if upscaler not in UPSCALERS:
        raise InvalidRequest(
            f"hr_upscaler must be one of: {', '.join(UPSCALERS)}; got {upscaler!r} (this studio has no upscaler "
            "models such as ESRGAN)"
        )
    factor = number("hr_scale (upscale by)", scale)
    if not 1 <= factor <= MAX_SCALE:
        raise InvalidRequest(f"hr_scale (upscale by) must be between 1 and {MAX_SCALE:g}, got {factor:g}")
    to_x, to_y = (whole_number(name, value) for name, value in (("hr_resize_x", resize_x), ("hr_resize_y", resize_y)))
    if to_x < 0 or to_y < 0:
        raise InvalidRequest("hr_resize_x and hr_resize_y must be 0 (upscale by hr_scale) or a size in pixels")
    size = target_size(width, height, factor, to_x, to_y)
    try:
        size = check_size(*size, limits)
    except InvalidRequest as error:
        raise InvalidRequest(f"the hires fix would end at {size[0]}x{size[1]}: {error}; upscale by less") from None
    extra = check_range("hr_second_pass_steps (hires steps)", second_pass_steps, 0, limits.max_steps)
    hires_steps = check_steps(extra or steps, limits)
    if second_pass_sampler in ("", None, SAME_SAMPLER):
        second_sampler = sampler
    elif isinstance(second_pass_sampler, str) and second_pass_sampler in SAMPLERS:
        second_sampler = second_pass_sampler
    else:
        raise InvalidRequest(
            f"hr_sampler_name (hires sampler) must be {SAME_SAMPLER!r} or one of: {', '.join(SAMPLER_NAMES)}; "
            f"got {second_pass_sampler!r}"
        )
    check_sampler_steps(second_sampler, hires_steps)
    prompt, negative_prompt = _second_pass_prompts(prompts, second_pass_prompts)
    return HiresPass(
        *size,
        upscaler=str(upscaler),
        steps=hires_steps,
        strength=check_strength(strength, hires_steps),
        sampler=second_sampler,
        prompt=prompt,
        negative_prompt=negative_prompt,
    )


def _second_pass_prompts(first: tuple[str, str], second: tuple[object, object]) -> tuple[str | None, str | None]:
    """The hires prompts that differ from the first pass's (None where one is empty or the same). The second pass
    runs inside the first pass's job, on its LoRAs: a hires prompt may repeat the prompt's LoRA tags but not
    change them."""
    prompt, negative_prompt = (
        check_text(name, value) for name, value in zip(("hr_prompt", "hr_negative_prompt"), second, strict=True)
    )
    if prompt and set(parse_loras(prompt)) != set(parse_loras(first[0])):
        raise InvalidRequest(
            "the hires prompt's LoRA tags differ from the prompt's: the hires pass runs with the first pass's "
            "LoRAs, so leave the tags out of the hires prompt (or write the same ones)"
        )
    return (
        prompt if prompt not in ("", first[0]) else None,
        negative_prompt if negative_prompt not in ("", first[1]) else None,
    )


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], upscaler: str, vae_scale_factor: int) -> torch.Tensor:
    """The first pass's latents resized to ``size`` (in pixels) by a latent upscaler; the aspect is kept by
    covering the size and cropping the middle, as A1111 does for "resize to"."""
    from torch.nn import functional

    mode, antialias = LATENT_UPSCALERS[upscaler]
    height, width = latents.shape[-2:]
    goal_x, goal_y = size[0] // vae_scale_factor, size[1] // vae_scale_factor
    cover = max(goal_x / width, goal_y / height)
    cover_x, cover_y = max(goal_x, round(width * cover)), max(goal_y, round(height * cover))
    extra = {"antialias": True} if antialias else {}
    resized = functional.interpolate(latents.float(), size=(cover_y, cover_x), mode=mode, **extra).to(latents.dtype)
    left, top = (cover_x - goal_x) // 2, (cover_y - goal_y) // 2
    return resized[..., top : top + goal_y, left : left + goal_x]


def upscale_pictures(pictures: Sequence[Image.Image], size: tuple[int, int], upscaler: str) -> list[Image.Image]:
    """The first pass's pictures resized to ``size`` by a picture upscaler, covering it and cropping the middle."""
    return [ImageOps.fit(picture, size, PIXEL_UPSCALERS[upscaler]) for picture in pictures]
