"""Hugging Face ZeroGPU, kept in one place: the ``spaces`` import, the GPU decorator and its time estimates.

On a ZeroGPU Space no process owns a GPU. A handler decorated with ``spaces.GPU(duration=...)`` asks for one for
about ``duration`` seconds, runs in a process forked for it, and streams its outputs back. So:

- ``spaces`` must be imported before torch (it patches torch's CUDA entry points): ``app.py`` imports this module
  right after reading the settings, and this module imports nothing heavy.
- a shorter estimate gets a GPU sooner (ZeroGPU queues long requests behind short ones), so each handler asks for
  what its steps, size and batch need, not a flat minute.
- the forked process cannot see the Stop flag set in the main one. What reaches it is the end of the stream: when
  Gradio closes the handler's generator, ``spaces`` tells the worker, which closes ours after its next output. So on
  ZeroGPU the generation handlers yield after every step (``ZERO_GPU`` tells ``jobs.stream`` to).

Anywhere else (no ``spaces`` package, or ``SPACES_ZERO_GPU`` unset: a laptop, a CPU or GPU Space) ``gpu`` returns
the handler unchanged and nothing here runs.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

try:
    import spaces
except ImportError:  # not installed (it is on every Space): nothing here runs
    spaces = None

F = TypeVar("F", bound=Callable[..., Any])

ZERO_GPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
"""Whether handlers run on ZeroGPU: the ``spaces`` package is installed and the Space says it is a ZeroGPU one."""

SECONDS_PER_STEP_AT_512 = 0.15
"""One denoising step of one 512x512 image with CFG on a ZeroGPU slice (a half H200), with room to spare; the time
of a step grows with the pixels (SDXL at 1024x1024 takes about four times as long)."""
STARTUP_SECONDS = 10
"""Moving the weights onto the GPU, the text encoder and the VAE decode: paid once per request."""
MIN_SECONDS = 15
MAX_SECONDS = 120
"""ZeroGPU refuses requests longer than the visitor's quota allows; two minutes covers 150 steps of 1024x1024."""


def estimate_seconds(
    steps: float, width: float, height: float, images: float = 1, strength: float = 1.0, controlnet: bool = False
) -> int:
    """The GPU seconds a generation should need: the steps it runs (``strength`` of them for image to image) for
    ``images`` pictures of ``width`` x ``height``, a ControlNet adding half again, plus start-up."""
    steps_run = max(1.0, float(steps) * min(max(float(strength), 0.0), 1.0))
    pixels = max(float(width) * float(height), 64 * 64) / (512 * 512)
    per_step = SECONDS_PER_STEP_AT_512 * pixels * max(1.0, float(images)) * (1.5 if controlnet else 1.0)
    seconds = STARTUP_SECONDS + steps_run * per_step
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(seconds))))


def _number(arguments: Mapping[str, Any], name: str, default: float) -> float:
    try:
        return float(arguments.get(name, default))
    except (TypeError, ValueError):
        return default


def _image_size(value: Any) -> tuple[float, float] | None:
    """The size of an image argument: a PIL image, or an editor value whose background is one."""
    picture = value.get("background") if isinstance(value, dict) else value
    size = getattr(picture, "size", None)
    return (float(size[0]), float(size[1])) if size else None


def generation_seconds(arguments: Mapping[str, Any]) -> int:
    """``estimate_seconds`` from a generation handler's arguments, by their names (``steps``, ``width``,
    ``height``, ``batch_size`` times ``batch_count``, ``strength``; the input image's size where the tab has no
    size sliders), with the hires fix's second pass added when ``enable_hr`` is on."""
    width, height = _number(arguments, "width", 0), _number(arguments, "height", 0)
    if not width or not height:
        width, height = _image_size(arguments.get("image")) or (512.0, 512.0)
    steps = _number(arguments, "steps", 25)
    images = _number(arguments, "batch_size", 1) * _number(arguments, "batch_count", 1)
    seconds = estimate_seconds(
        steps=steps,
        width=width,
        height=height,
        images=images,
        strength=_number(arguments, "strength", 1.0),
        controlnet="conditioning_scale" in arguments,
    )
    if arguments.get("enable_hr") is True:  # the hires fix's second pass, at its size
        scale = _number(arguments, "hr_scale", 2.0)
        second = estimate_seconds(
            steps=_number(arguments, "hr_second_pass_steps", 0) or steps,
            width=width * scale,
            height=height * scale,
            images=images,
            strength=_number(arguments, "denoising_strength", 0.7),
        )
        seconds = min(MAX_SECONDS, seconds + second - STARTUP_SECONDS)
    return seconds


def compare_seconds(arguments: Mapping[str, Any]) -> int:
    """A comparison: every prompt crossed with every axis value, each an image of the shared settings."""
    prompts = max(1, len([line for line in str(arguments.get("prompts") or "").splitlines() if line.strip()]))
    values = max(1, len([value for value in str(arguments.get("axis_values") or "").split(",") if value.strip()]))
    rows = values if str(arguments.get("axis", "None")) != "None" else 1
    columns = prompts
    if str(arguments.get("column_axis", "None")) != "None":  # one prompt; the column values go across
        listed = str(arguments.get("column_values") or "").split(",")
        columns = max(1, len([value for value in listed if value.strip()]))
    cells = rows * columns
    steps = _number(arguments, "steps", 25)
    for axis, values_of in (("axis", "axis_values"), ("column_axis", "column_values")):
        if str(arguments.get(axis)) == "Steps":  # the steps are an axis: count the largest for every cell
            numbers = [_number({"v": v}, "v", steps) for v in str(arguments.get(values_of) or "").split(",")]
            steps = max(numbers, default=steps)
    width, height = _number(arguments, "width", 512), _number(arguments, "height", 512)
    return estimate_seconds(steps=steps, width=width, height=height, images=cells)


def trajectory_seconds(arguments: Mapping[str, Any]) -> int:
    """The Lab's trajectory: one generation, plus a VAE decode of two frames every k steps."""
    steps = _number(arguments, "steps", 25)
    frames = steps / max(1.0, _number(arguments, "every", 5))
    width, height = _number(arguments, "width", 512), _number(arguments, "height", 512)
    return estimate_seconds(steps=steps + frames, width=width, height=height)


def race_seconds(arguments: Mapping[str, Any]) -> int:
    """The Lab's sampler race: each sampler's run (DDPM with its own steps), twice with a rerun."""
    samplers = [str(name) for name in (arguments.get("samplers") or [])]
    steps, ddpm_steps = _number(arguments, "steps", 25), _number(arguments, "ddpm_steps", 100)
    total = sum(ddpm_steps if name == "DDPM" else steps for name in samplers) or steps
    total *= 2 if arguments.get("rerun") else 1
    width, height = _number(arguments, "width", 512), _number(arguments, "height", 512)
    return estimate_seconds(steps=total, width=width, height=height)


def vae_seconds(arguments: Mapping[str, Any]) -> int:
    """A VAE round trip, no denoising (the Lab's latent forward process)."""
    return MIN_SECONDS


def duration_of(handler: Callable[..., Any], estimate: Callable[[Mapping[str, Any]], int]) -> Callable[..., int]:
    """A ``duration`` for ``spaces.GPU``: it is called with the handler's own arguments (as Gradio passes them,
    by position), which are bound to the handler's parameter names for ``estimate``."""
    signature = inspect.signature(handler)

    def duration(*args: Any, **kwargs: Any) -> int:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return MAX_SECONDS
        bound.apply_defaults()
        return estimate(bound.arguments)

    return duration


def gpu(estimate: Callable[[Mapping[str, Any]], int] = generation_seconds) -> Callable[[F], F]:
    """On ZeroGPU, ``spaces.GPU`` with a duration ``estimate`` made from the handler's arguments; elsewhere the
    handler itself. Put it outermost, so the whole handler (errors translated, Stop honoured) runs on the GPU."""

    def decorate(handler: F) -> F:
        if not ZERO_GPU or spaces is None:
            return handler
        return spaces.GPU(handler, duration=duration_of(handler, estimate))  # type: ignore[no-any-return]

    return decorate
