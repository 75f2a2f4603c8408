"""The Lab: how diffusion works, shown with diffusers' own schedulers and the studio's own model.

Three experiments, each small enough to read in one sitting:

- The forward process. ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` for a picture, a timestep and a noise
  schedule, computed by diffusers' ``DDPMScheduler.add_noise`` (so what users see is what training does), in pixel
  space and, through the model's VAE, in its latent space; with plots of the schedules and a strip of ``x_t``.
- The reverse process. A generation that records, every few steps, the current sample and the model's prediction
  of the clean image ``x_0``, decoded by the VAE into a filmstrip.
- A sampler race. The same prompt, seed and starting noise ``x_T`` through several samplers, timed on this machine,
  and each run again with fresh step noise to show which samplers are deterministic given ``x_T``.

It knows nothing of Gradio. GPU work runs inside ``ModelManager.job`` (which holds the GPU lock); the pixel-space
forward process and the plots are CPU work on small tensors and take no lock.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageDraw, ImageFont, ImageOps

from studio import compare, images
from studio.errors import Cancelled, InvalidRequest, OutOfMemory
from studio.lab_requests import (
    LAB_MAX_PIXELS,
    MAX_FRAMES,
    NUM_TRAIN_TIMESTEPS,
    SCHEDULE_NAMES,
    SCHEDULES,
    STOCHASTIC_NOTE,
    STRIP_SIDE,
    STRIP_TIMESTEPS,
    ForwardRequest,
    ProgressCallback,
    RaceProgress,
    RaceRequest,
    TrajectoryRequest,
    check_schedule,
    check_timestep,
    example_scene,
)
from studio.loras import AppliedLora, LoraLibrary, parse_loras, strip_loras
from studio.model_manager import Job, ModelManager, Task
from studio.prompt_encoding import StepCallback, prompt_arguments, switching
from studio.schedulers import DEFAULT_SAMPLER, SAMPLER_NAMES, check_sampler, check_sampler_steps
from studio.sources import looks_local
from studio.vae_decode import decode_latents, float32_vae
from studio.validation import (
    Limits,
    check_flag,
    check_fraction,
    check_guidance_scale,
    check_image,
    check_size,
    check_steps,
    check_text,
    resolve_seed,
    whole_number,
)


def alphas_cumprod(schedule: str) -> np.ndarray:
    """abar_t for t = 0..T-1: the share of the signal's variance left at t. Read from diffusers, not recomputed,
    so the Lab shows exactly the numbers training and sampling use. Read-only: it is computed once per schedule."""
    return _alphas_cumprod(check_schedule(schedule).name)


@functools.cache
def _alphas_cumprod(name: str) -> np.ndarray:
    values = SCHEDULES[name].scheduler().alphas_cumprod.double().numpy()
    values.flags.writeable = False
    return values


@dataclass(frozen=True)
class SchedulePoint:
    """One schedule at one timestep: the coefficients of ``x_t = signal * x_0 + noise * eps``."""

    schedule: str
    timestep: int
    alpha_bar: float

    @property
    def signal(self) -> float:
        """sqrt(abar_t), the weight of the clean picture."""
        return math.sqrt(self.alpha_bar)

    @property
    def noise(self) -> float:
        """sqrt(1 - abar_t), the weight of the noise."""
        return math.sqrt(1 - self.alpha_bar)

    @property
    def snr(self) -> float:
        """The signal-to-noise ratio abar / (1 - abar): above 1 the picture dominates, below 1 the noise."""
        return self.alpha_bar / (1 - self.alpha_bar)


def schedule_point(schedule: str, timestep: int) -> SchedulePoint:
    return SchedulePoint(schedule, timestep, float(alphas_cumprod(schedule)[timestep]))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: int | Sequence[int], schedule: str) -> torch.Tensor:
    """The forward process in one jump, by diffusers: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

    ``timesteps`` is one t for every picture of the batch, or one t per picture.
    """
    count = x0.shape[0]
    values = [timesteps] * count if isinstance(timesteps, int) else list(timesteps)
    if len(values) != count:
        raise InvalidRequest(f"add_noise got {count} pictures and {len(values)} timesteps; give one t per picture")
    t = torch.tensor(values, dtype=torch.long, device=x0.device)
    return check_schedule(schedule).scheduler().add_noise(x0, noise, t)


def seeded_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """eps ~ N(0, I) from a CPU generator, so the same seed gives the same noise on every machine."""
    return torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(seed))


# --- Pictures and tensors ----------------------------------------------------------------------------------------


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB picture as a (1, 3, H, W) tensor in [-1, 1], the range diffusion models and their VAEs work in."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(tensor: torch.Tensor, index: int = 0) -> Image.Image:
    """Picture ``index`` of a (N, 3, H, W) tensor in [-1, 1]; values outside are clipped, as any display must.

    The rounding is numpy's: small tensor ops in torch wake its thread pool, which costs more than the work
    when another job keeps the CPU busy, and the explorer does this on every move of the slider.
    """
    array = tensor[index].detach().float().cpu().numpy().transpose(1, 2, 0)
    return Image.fromarray(np.rint((np.clip(array, -1, 1) + 1) * 127.5).astype(np.uint8))


def _lab_size(image: Image.Image, limits: Limits) -> Image.Image:
    """The picture at most ``LAB_MAX_PIXELS`` (and ``--max-pixels``), in multiples of 8 so a VAE can encode it."""
    width, height = images.fit_within(image.width, image.height, min(LAB_MAX_PIXELS, limits.max_pixels))
    return image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)


# --- Plots, drawn with PIL ---------------------------------------------------------------------------------------
# Labels in the pictures are ASCII: PIL's built-in font has no Greek letters, roots or subscripts.


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class _Panel:
    """One plot of a curve per schedule over t; ``log`` plots log10 of the values."""

    title: str
    curve: Callable[[np.ndarray], np.ndarray]
    log: bool = False


_PANELS = (
    _Panel("abar_t: the signal's variance left", lambda a: a),
    _Panel("sqrt(abar_t): the weight of x0", np.sqrt),
    _Panel("sqrt(1 - abar_t): the weight of the noise eps", lambda a: np.sqrt(1 - a)),
    _Panel("SNR = abar_t / (1 - abar_t), log scale", lambda a: a / (1 - a), log=True),
)


def _draw_panel(
    draw: ImageDraw.ImageDraw, origin: tuple[int, int], size: tuple[int, int], panel: _Panel, schedule: str, t: int
) -> None:
    left, top = origin
    width, height = size
    font, small = _font(15), _font(12)
    draw.text((left + 8, top + 4), panel.title, fill="black", font=font)
    plot_left, plot_top = left + 56, top + 30
    plot_right, plot_bottom = left + width - 16, top + height - 34
    curves = {name: panel.curve(alphas_cumprod(name)) for name in SCHEDULE_NAMES}
    if panel.log:
        curves = {name: np.log10(values) for name, values in curves.items()}
        low = math.floor(min(values.min() for values in curves.values()))
        high = math.ceil(max(values.max() for values in curves.values()))
        ticks = [(float(v), f"1e{v}" if v else "1") for v in range(low, high + 1, 2 if high - low > 8 else 1)]
    else:
        low, high = 0.0, 1.0
        ticks = [(v, f"{v:g}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]

    def x_of(step: float) -> float:
        return plot_left + (plot_right - plot_left) * step / (NUM_TRAIN_TIMESTEPS - 1)

    def y_of(value: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * (value - low) / (high - low)

    for value, label in ticks:
        y = y_of(value)
        draw.line([(plot_left, y), (plot_right, y)], fill=(226, 228, 232))
        draw.text((plot_left - 6, y), label, fill=(80, 80, 80), font=small, anchor="rm")
    for step in (0, 250, 500, 750, 999):
        x = x_of(step)
        draw.line([(x, plot_bottom), (x, plot_bottom + 4)], fill=(80, 80, 80))
        draw.text((x, plot_bottom + 6), str(step), fill=(80, 80, 80), font=small, anchor="mt")
    draw.text(((plot_left + plot_right) / 2, plot_bottom + 20), "t", fill=(80, 80, 80), font=small, anchor="mt")
    draw.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline=(120, 120, 120))
    steps = np.arange(NUM_TRAIN_TIMESTEPS)
    # The chosen schedule last and thicker, so it is drawn over the others.
    for name in sorted(SCHEDULE_NAMES, key=lambda n: n == schedule):
        points = list(zip(x_of(steps).tolist(), y_of(curves[name]).tolist(), strict=True))
        draw.line(points, fill=SCHEDULES[name].color, width=3 if name == schedule else 2)
    x = x_of(t)
    for y in range(int(plot_top), int(plot_bottom), 8):  # the current t, dashed
        draw.line([(x, y), (x, min(y + 4, plot_bottom))], fill=(40, 40, 40), width=2)
    for name in SCHEDULE_NAMES:
        y = y_of(float(curves[name][t]))
        radius = 6 if name == schedule else 4
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=SCHEDULES[name].color, outline="black")
    value = float(panel.curve(alphas_cumprod(schedule))[t])
    text = f"{value:.3g}"
    anchor = "lb" if t < NUM_TRAIN_TIMESTEPS / 2 else "rb"
    draw.text(
        (x + (8 if anchor == "lb" else -8), plot_top + 18), f"t={t}: {text}", fill="black", font=small, anchor=anchor
    )


def draw_schedule_plots(schedule: str, timestep: int) -> Image.Image:
    """Four plots over t (abar, sqrt(abar), sqrt(1 - abar), and the SNR on a log scale), one line per schedule,
    with ``timestep`` marked and ``schedule`` drawn thicker. PIL rather than a plotting library: no dependency,
    a log axis, and a PNG that explains itself wherever it goes."""
    check_schedule(schedule)
    check_timestep(timestep)
    panel_w, panel_h, legend_h = 480, 280, 34
    figure = Image.new("RGB", (2 * panel_w, legend_h + 2 * panel_h), "white")
    draw = ImageDraw.Draw(figure)
    x = 16
    for name in SCHEDULE_NAMES:
        entry = SCHEDULES[name]
        draw.line([(x, 17), (x + 28, 17)], fill=entry.color, width=4 if name == schedule else 2)
        label = entry.label + (" (chosen)" if name == schedule else "")
        draw.text((x + 36, 17), label, fill="black", font=_font(14), anchor="lm")
        x += 48 + int(draw.textlength(label, font=_font(14)))
    for index, panel in enumerate(_PANELS):
        origin = (panel_w * (index % 2), legend_h + panel_h * (index // 2))
        _draw_panel(draw, origin, (panel_w, panel_h), panel, schedule, timestep)
    return figure


# --- The forward process -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardResult:
    """``x_0``, ``eps`` and ``x_t`` as pictures, the schedule's numbers at t, its plots, and the strip of every
    schedule at several t (plus the chosen one)."""

    request: ForwardRequest
    clean: Image.Image
    noise: Image.Image
    noisy: Image.Image
    point: SchedulePoint
    plots: Image.Image
    strip: Image.Image
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LatentForwardResult:
    """The forward process in the model's latent space: the VAE's round trip of ``x_0`` (what the latents hold),
    the noisy latents decoded, and the noisy latents' channels as the UNet sees them."""

    request: ForwardRequest
    round_trip: Image.Image
    noisy: Image.Image
    channels: Image.Image
    latent_shape: tuple[int, ...]
    point: SchedulePoint
    model: str
    notes: tuple[str, ...] = ()


def validate_forward(request: ForwardRequest, limits: Limits) -> ForwardRequest:
    """Checks, with the picture made RGB and scaled (the example scene when none), and the seed resolved."""
    if not isinstance(request, ForwardRequest):
        raise InvalidRequest(f"expected a ForwardRequest, got {type(request).__name__}")
    image = example_scene() if request.image is None else images.to_rgb(check_image("image", request.image))
    return replace(
        request,
        image=_lab_size(image, limits),
        schedule=check_schedule(request.schedule).name,
        timestep=check_timestep(request.timestep),
        seed=resolve_seed(request.seed),
    )


def _strip_timesteps(timestep: int) -> tuple[int, ...]:
    return tuple(sorted({*STRIP_TIMESTEPS, timestep}))


def draw_noise_strip(image: Image.Image, seed: int, timestep: int) -> Image.Image:
    """``x_t`` of ``image`` at several t (and ``timestep``) for every schedule: one row per schedule, the same eps
    everywhere, so each difference comes from the schedule alone.

    The picture is made small before it is noised (not after), so each thumbnail shows the noise a picture of its
    size gets: shrinking a noisy picture would average the noise away and make every schedule look gentler.
    """
    small = image.copy()
    small.thumbnail((STRIP_SIDE, STRIP_SIDE), Image.LANCZOS)
    x0 = image_to_tensor(small)
    noise = seeded_noise(x0.shape, seed)
    columns = _strip_timesteps(timestep)
    x0s, noises = x0.expand(len(columns), -1, -1, -1), noise.expand(len(columns), -1, -1, -1)
    rows = []
    for name in SCHEDULE_NAMES:  # one batched add_noise per schedule: a column per picture of the batch
        noisy = add_noise(x0s, noises, columns, name)
        rows.append([tensor_to_image(noisy, index) for index in range(len(columns))])
    labels = compare.GridLabels(
        columns=[f"t={t}" + (" (slider)" if t == timestep else "") for t in columns],
        rows=[SCHEDULES[name].label for name in SCHEDULE_NAMES],
    )
    return compare.draw_grid(rows, labels)


def forward_process(request: ForwardRequest, limits: Limits) -> ForwardResult:
    """The forward process in pixel space (CPU only): ``x_t`` from ``add_noise``, with its plots and strip."""
    request = validate_forward(request, limits)
    assert request.image is not None
    x0 = image_to_tensor(request.image)
    noise = seeded_noise(x0.shape, request.seed)
    noisy = add_noise(x0, noise, request.timestep, request.schedule)
    notes = []
    if request.timestep == 0:
        notes.append("At t = 0 one step of noise is already added: x_0 itself is the picture before any step.")
    return ForwardResult(
        request=request,
        clean=request.image,
        noise=tensor_to_image(noise),
        noisy=tensor_to_image(noisy),
        point=schedule_point(request.schedule, request.timestep),
        plots=draw_schedule_plots(request.schedule, request.timestep),
        strip=draw_noise_strip(request.image, request.seed, request.timestep),
        notes=tuple(notes),
    )


def latent_channels(latents: torch.Tensor, height: int) -> Image.Image:
    """The channels of (1, C, h, w) latents side by side in grey (-3..3 as black..white), each scaled to
    ``height`` pixels without smoothing, so each latent 'pixel' stays visible as a square."""
    tiles = []
    for channel in latents[0].detach().float().cpu().numpy():
        tile = Image.fromarray(np.rint((np.clip(channel, -3, 3) + 3) / 6 * 255).astype(np.uint8))
        side = max(1, round(height * tile.width / tile.height))
        tiles.append(tile.resize((side, height), Image.NEAREST))
    gap = 4
    strip = Image.new("L", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), height), 255)
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + gap
    return strip.convert("RGB")


# --- Reading a sampler's state -----------------------------------------------------------------------------------


def keeps_sigma_scaled_latents(scheduler: SchedulerMixin) -> bool:
    """Whether the scheduler stores its sample as ``x0 + sigma * eps`` (Euler, Heun, LMS, DPM++ SDE: the
    k-diffusion samplers) rather than as ``sqrt(abar) x0 + sqrt(1 - abar) eps`` (DDPM, DDIM, PNDM, DPM++ 2M,
    UniPC). The first start from noise of standard deviation sigma_max (about 14.6 for Stable Diffusion) and
    divide by sqrt(sigma^2 + 1) only on the way into the UNet; their ``init_noise_sigma`` says so."""
    return float(scheduler.init_noise_sigma) > 1.0


def _index(scheduler: SchedulerMixin, timestep: Any) -> int:
    if getattr(scheduler, "step_index", None) is not None:
        return int(scheduler.step_index)
    return int(scheduler.index_for_timestep(timestep))


@dataclass(frozen=True)
class NoiseLevel:
    """Where the model's input stands: ``x = alpha x0 + sigma eps`` with alpha^2 + sigma^2 = 1, which the
    scheduler keeps multiplied by ``scale`` (1 for DDPM-style samplers, sqrt(1 + s^2) for sigma-scaled ones)."""

    alpha: float
    sigma: float
    scale: float


def noise_level(scheduler: SchedulerMixin, timestep: Any) -> NoiseLevel:
    """The noise level of the sample the scheduler is about to step from (call before ``step``).

    Samplers with a ``sigmas`` table (the k-diffusion ones, DPM++, UniPC) are read from it, because with Karras
    sigmas the timestep the UNet is told is a rounded stand-in for the sigma really used; the rest from abar_t.
    A sigma s of that table is the noise-to-signal ratio: alpha = 1 / sqrt(1 + s^2), sigma = s * alpha.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and len(sigmas) > 0:
        mid_point = getattr(scheduler, "mid_point_sigma", None)  # DPM++ SDE's second stage evaluates there
        s = float(mid_point if mid_point is not None else sigmas[_index(scheduler, timestep)])
        alpha = 1 / math.sqrt(1 + s * s)
        scale = 1 / alpha if keeps_sigma_scaled_latents(scheduler) else 1.0
        return NoiseLevel(alpha=alpha, sigma=s * alpha, scale=scale)
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    return NoiseLevel(alpha=math.sqrt(alpha_bar), sigma=math.sqrt(1 - alpha_bar), scale=1.0)


def predicted_x0(
    model_output: torch.Tensor, sample: torch.Tensor, level: NoiseLevel, prediction_type: str
) -> torch.Tensor:
    """The model's estimate of the clean latents from its output at one step.

    With x = sample / scale = alpha x0 + sigma eps: an epsilon model gives x0 = (x - sigma eps) / alpha, a
    v-prediction model x0 = alpha x - sigma v, and a sample model x0 itself. For a sigma-scaled sampler (Euler)
    this is the familiar x0 = sample - s * eps; using abar_t on its sample directly would be wrong by a factor of
    up to sqrt(1 + s^2).
    """
    x = sample / level.scale
    if prediction_type == "epsilon":
        return (x - level.sigma * model_output) / level.alpha
    if prediction_type == "v_prediction":
        return level.alpha * x - level.sigma * model_output
    if prediction_type == "sample":
        return model_output
    raise InvalidRequest(f"the model predicts {prediction_type!r}, which the Lab cannot turn into x0")


def stored_scale(scheduler: SchedulerMixin) -> float:
    """What the scheduler's current sample (after a step) is multiplied by, against ``alpha x0 + sigma eps``.

    Dividing by it makes a sigma-scaled sample comparable with the others (and decodable by the VAE as the
    noisy picture it is); for DDPM-style samplers it is 1. After the last step sigma is 0 and so is the
    difference: the last frame is the final latents themselves.
    """
    if not keeps_sigma_scaled_latents(scheduler):
        return 1.0
    mid_point = getattr(scheduler, "mid_point_sigma", None)  # DPM++ SDE's first stage ends at the midpoint
    s = float(mid_point if mid_point is not None else scheduler.sigmas[scheduler.step_index])
    return math.sqrt(1 + s * s)


class _StepWatcher:
    """Remembers the model's x0 prediction at the latest step of one scheduler.

    ``callback_on_step_end`` is handed the latents after each step but not the model's output, and the pipeline
    drops the step output that holds ``pred_original_sample``. So the job's own scheduler (every job gets a new
    one) has its ``step`` wrapped: the wrapper keeps the scheduler's ``pred_original_sample`` where its output has
    one (DDPM, DDIM, Euler, Euler a, Heun, LMS, DPM++ SDE) and computes x0 from the model output and the noise
    level otherwise (PNDM, DPM++ 2M, UniPC). ``functools.wraps`` keeps ``step``'s signature, which the pipeline
    inspects to decide whether to pass ``eta`` and ``generator``.
    """

    def __init__(self, scheduler: SchedulerMixin) -> None:
        self.x0: torch.Tensor | None = None
        original = scheduler.step

        @functools.wraps(original)
        def step(model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            level = noise_level(scheduler, timestep)  # before the step moves the scheduler on
            as_dict = kwargs.pop("return_dict", True)
            output = original(model_output, timestep, sample, *args, return_dict=True, **kwargs)
            x0 = getattr(output, "pred_original_sample", None)
            if x0 is None:
                x0 = predicted_x0(model_output, sample, level, scheduler.config.prediction_type)
            self.x0 = x0.detach().clone()
            return output if as_dict else output.to_tuple()

        scheduler.step = step


# --- The reverse process -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One moment of the reverse process: after model call ``step`` of ``total`` (at ``timestep``), the sample
    (what the sampler holds, as a noisy picture) and the model's prediction of the clean picture."""

    step: int
    total: int
    timestep: float
    sample: Image.Image
    prediction: Image.Image

    def label(self) -> str:
        return f"step {self.step}/{self.total} · t={self.timestep:.0f}"


@dataclass(frozen=True)
class Trajectory:
    """The frames in order; the last frame's sample is ``image``, the final picture, pixel for pixel."""

    request: TrajectoryRequest
    frames: tuple[Frame, ...]
    image: Image.Image
    filmstrip: Image.Image
    model: str
    seconds: float
    notes: tuple[str, ...] = ()


def _validate_generation(request: Any, limits: Limits) -> dict[str, Any]:
    """The prompt, size, steps, CFG and seed every Lab generation has, checked as txt2img checks them (a malformed
    ``<lora:...>`` tag included)."""
    width, height = check_size(request.width, request.height, limits)
    prompt = check_text("prompt", request.prompt)
    parse_loras(prompt)
    return {
        "prompt": prompt,
        "negative_prompt": check_text("negative_prompt", request.negative_prompt),
        "num_inference_steps": check_steps(request.num_inference_steps, limits),
        "guidance_scale": check_guidance_scale(request.guidance_scale),
        "width": width,
        "height": height,
        "seed": resolve_seed(request.seed),
    }


def validate_trajectory(request: TrajectoryRequest, limits: Limits) -> TrajectoryRequest:
    if not isinstance(request, TrajectoryRequest):
        raise InvalidRequest(f"expected a TrajectoryRequest, got {type(request).__name__}")
    sampler = check_sampler(request.sampler)
    common = _validate_generation(request, limits)
    steps = common["num_inference_steps"]
    check_sampler_steps(sampler.name, steps)
    every = whole_number("every", request.every)
    if not 1 <= every <= steps:
        raise InvalidRequest(f"every (steps between frames) must be between 1 and the steps ({steps}), got {every}")
    # At most this many model calls: second-order samplers call twice per step (less one), PNDM once more.
    calls = steps * getattr(sampler.scheduler_class, "order", 1) + 1
    if frame_count(calls, every) > MAX_FRAMES:
        raise InvalidRequest(
            f"{steps} steps of {sampler.name} with a frame every {every} model calls makes up to "
            f"{frame_count(calls, every)} frames; the filmstrip holds at most {MAX_FRAMES}. "
            f"Set every to at least {math.ceil(calls / MAX_FRAMES)}."
        )
    return replace(request, every=every, **common)


def frame_count(model_calls: int, every: int) -> int:
    """Frames a trajectory records: after every ``every``-th model call, and after the last one."""
    return math.ceil(model_calls / every)


def draw_filmstrip(frames: Sequence[Frame]) -> Image.Image:
    """Two rows (the sample, the predicted x0) with a column per frame and its step and timestep above it."""

    def fit(image: Image.Image) -> Image.Image:
        """Every frame 192 pixels at most and 128 at least, so its label fits above it."""
        side = max(128, min(192, max(image.size)))
        return ImageOps.contain(image, (side, side), Image.LANCZOS)

    rows = [[fit(frame.sample) for frame in frames], [fit(frame.prediction) for frame in frames]]
    labels = compare.GridLabels(columns=[frame.label() for frame in frames], rows=["sample x_t", "predicted x0"])
    return compare.draw_grid(rows, labels)


def _initial_latents(pipe: DiffusionPipeline, width: int, height: int, generator: torch.Generator) -> torch.Tensor:
    """x_T as the pipeline itself would draw it from ``generator`` (same shape, dtype and CPU draw), so a run
    given these latents and the same generator makes the image txt2img makes."""
    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=pipe.unet.dtype)


def _model_name(source: str) -> str:
    """The model as the metadata names it: a Hub id as it is, a local model by its file or folder name."""
    return Path(source).stem if looks_local(source) else source


def _generation_arguments(
    pipe: DiffusionPipeline, request: Any, steps: int, on_step_end: StepCallback
) -> dict[str, Any]:
    """The pipeline arguments a Lab generation shares with txt2img (which makes the same picture from them), its
    prompts encoded as txt2img encodes them (emphasis, long prompts, prompt editing), and its step callback."""
    arguments = {
        "prompt": strip_loras(request.prompt),
        "negative_prompt": request.negative_prompt or None,
        "num_inference_steps": steps,
        "guidance_scale": request.guidance_scale,
        "width": request.width,
        "height": request.height,
        "num_images_per_prompt": 1,
        "output_type": "latent",
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    call, switch = prompt_arguments(pipe, arguments)
    return {**call, "callback_on_step_end": switching(on_step_end, switch)}


# --- The sampler race --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaceEntry:
    """One sampler's run: its steps, its model calls (2nd-order samplers call twice per step), its wall time in
    seconds (the faster of its runs), its picture, and, after a rerun, the rerun's picture and the largest
    difference of any pixel channel between the two (0: the same picture)."""

    sampler: str
    steps: int
    model_calls: int
    seconds: float
    image: Image.Image
    eta: float | None = None
    rerun_image: Image.Image | None = None
    max_difference: int | None = None

    @property
    def deterministic(self) -> bool | None:
        """Whether the same x_T gave the same picture with other step noise; None without a rerun."""
        return None if self.max_difference is None else self.max_difference == 0


@dataclass(frozen=True)
class RaceResult:
    """The entries in the order the samplers were asked for, the model, and the device and dtype it ran on."""

    request: RaceRequest
    entries: tuple[RaceEntry, ...]
    model: str
    device: str
    notes: tuple[str, ...] = ()


def validate_race(request: RaceRequest, limits: Limits) -> RaceRequest:
    if not isinstance(request, RaceRequest):
        raise InvalidRequest(f"expected a RaceRequest, got {type(request).__name__}")
    if isinstance(request.samplers, str) or not isinstance(request.samplers, Sequence) or not request.samplers:
        raise InvalidRequest(f"choose one or more samplers to race, from: {', '.join(SAMPLER_NAMES)}")
    samplers = tuple(check_sampler(name).name for name in request.samplers)
    if len(set(samplers)) != len(samplers):
        raise InvalidRequest(f"each sampler races once; {', '.join(samplers)} names one twice")
    runs = len(samplers) * (2 if request.rerun else 1)
    if runs > limits.max_cells:
        raise InvalidRequest(
            f"{len(samplers)} samplers{' run twice' if request.rerun else ''} make {runs} images; this studio makes "
            f"at most {limits.max_cells} per comparison (--max-cells). Race fewer samplers"
            + (", or turn off the rerun." if request.rerun else ".")
        )
    common = _validate_generation(request, limits)
    for sampler in samplers:
        check_sampler_steps(sampler, common["num_inference_steps"])
    return replace(
        request,
        samplers=samplers,
        ddpm_steps=check_steps(request.ddpm_steps, limits) if "DDPM" in samplers else request.ddpm_steps,
        eta=check_fraction("eta", request.eta),
        rerun=check_flag("rerun", request.rerun),
        **common,
    )


def max_pixel_difference(first: Image.Image, second: Image.Image) -> int:
    return int(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).max())


class Lab:
    """The Lab's GPU experiments over the studio's model manager (the forward process in pixels needs no GPU:
    see ``forward_process``)."""

    def __init__(self, manager: ModelManager, limits: Limits, loras: LoraLibrary | None = None) -> None:
        self.manager = manager
        self.limits = limits
        self.loras = loras or LoraLibrary(None)

    def forward_process(self, request: ForwardRequest) -> ForwardResult:
        return forward_process(request, self.limits)

    @contextmanager
    def _job(self, sampler: str, seeds: Sequence[int], what: str, loras: Sequence[AppliedLora] = ()) -> Iterator[Job]:
        """A txt2img pipeline holding the GPU (with the prompt's LoRAs on it), as the service's generations get one;
        out of memory, what the failed job held is freed (the lock is already released) and the user is told what
        to make smaller."""
        try:
            with self.manager.job(Task.TXT2IMG, sampler, seeds, loras) as job:
                yield job
        except torch.OutOfMemoryError:
            self.manager.free_memory()
            raise OutOfMemory(
                f"Out of memory on {self.manager.placement.device.type} {what}. The memory was freed: "
                "lower the size (or the steps between frames) and try again."
            ) from None

    def forward_process_latent(self, request: ForwardRequest) -> LatentForwardResult:
        """The forward process where Stable Diffusion runs it: encode ``x_0`` with the VAE (the posterior mean,
        so only eps is random), noise the latents with ``add_noise``, decode. Loads the model on first use."""
        request = validate_forward(request, self.limits)
        assert request.image is not None
        x0 = image_to_tensor(request.image)
        size = f"{request.image.width}x{request.image.height}"
        with self._job(DEFAULT_SAMPLER, [request.seed], f"encoding a {size} picture") as job:
            pipe = job.pipeline
            latents = _encode(pipe.vae, x0)
            noise = seeded_noise(latents.shape, request.seed).to(latents.device, latents.dtype)
            noisy = add_noise(latents, noise, request.timestep, request.schedule)
            (round_trip,), notes = decode_latents(pipe.vae, pipe.image_processor, latents)
            (decoded,), more = decode_latents(pipe.vae, pipe.image_processor, noisy)
        return LatentForwardResult(
            request=request,
            round_trip=round_trip,
            noisy=decoded,
            channels=latent_channels(noisy, max(64, request.image.height // 2)),
            latent_shape=tuple(latents.shape[1:]),
            point=schedule_point(request.schedule, request.timestep),
            model=_model_name(job.model.source),
            notes=tuple(dict.fromkeys([*notes, *more])),
        )

    def trajectory(
        self,
        request: TrajectoryRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Trajectory:
        """Generate as txt2img does (same seed, same picture) and keep a frame every ``request.every`` model
        calls: the sample after the call, scaled to the ``alpha x0 + sigma eps`` form, and the predicted x0,
        both decoded by the VAE one at a time (the last exactly as the final image is decoded)."""
        request = validate_trajectory(request, self.limits)
        loras = self.loras.resolve(parse_loras(request.prompt))
        kept: list[tuple[int, int, float, torch.Tensor, torch.Tensor]] = []
        size = f"{request.width}x{request.height}"
        with self._job(request.sampler, [request.seed], f"filming a {size} generation", loras) as job:
            pipe = job.pipeline
            watcher = _StepWatcher(pipe.scheduler)

            def on_step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict:
                total = pipe.num_timesteps
                if (step + 1) % request.every == 0 or step + 1 == total:
                    latents = tensors["latents"].detach().clone()
                    assert watcher.x0 is not None
                    kept.append((step + 1, total, float(timestep), latents / stored_scale(pipe.scheduler), watcher.x0))
                if progress is not None:
                    progress(step + 1, total)
                if cancel is not None and cancel.is_set():
                    pipe._interrupt = True
                return tensors

            started = time.perf_counter()
            output = pipe(
                generator=[torch.Generator("cpu").manual_seed(request.seed)],
                **_generation_arguments(pipe, request, request.num_inference_steps, on_step_end),
            )
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped: the generation was interrupted and nothing was kept.")
            (image,), notes = decode_latents(pipe.vae, pipe.image_processor, output.images)
            seconds = time.perf_counter() - started
            frames = []
            for index, (step, total, timestep, sample, x0) in enumerate(kept):
                last = index == len(kept) - 1
                (picture,), more = ([image], []) if last else decode_latents(pipe.vae, pipe.image_processor, sample)
                (prediction,), most = decode_latents(pipe.vae, pipe.image_processor, x0)
                notes = [*notes, *more, *most]
                frames.append(Frame(step, total, timestep, picture, prediction))
        notes_out = list(dict.fromkeys(notes))
        if frames and frames[-1].total != request.num_inference_steps:
            notes_out.append(
                f"{request.sampler} made {frames[-1].total} model calls for {request.num_inference_steps} steps "
                "(Heun and DPM++ SDE call the model twice per step, PNDM once more at the start); the frames count "
                "model calls."
            )
        return Trajectory(
            request=request,
            frames=tuple(frames),
            image=image,
            filmstrip=draw_filmstrip(frames),
            model=_model_name(job.model.source),
            seconds=seconds,
            notes=tuple(notes_out),
        )

    def sampler_race(
        self,
        request: RaceRequest,
        *,
        progress: RaceProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> RaceResult:
        """Run every sampler of the race on the same x_T, timed on this machine. Each first run makes the picture
        txt2img makes with the same settings; a rerun keeps x_T and changes only the noise drawn during sampling
        (the generator, and the Brownian tree of the SDE sampler)."""
        request = validate_race(request, self.limits)
        loras = self.loras.resolve(parse_loras(request.prompt))
        runs = [(sampler, seed) for sampler in request.samplers for seed in (request.seed, request.rerun_seed())]
        if not request.rerun:
            runs = runs[::2]
        results: dict[tuple[str, int], tuple[Image.Image, int, float]] = {}
        notes: list[str] = []
        model = ""
        for index, (sampler, step_seed) in enumerate(runs):
            label = f"{sampler} ({STOCHASTIC_NOTE})" if step_seed != request.seed else sampler

            def report(fraction: float, done: int = index, label: str = label) -> None:
                if progress is not None:
                    progress((done + fraction) / len(runs), label)

            image, calls, seconds, more, model = self._race_run(request, sampler, step_seed, loras, report, cancel)
            results[(sampler, step_seed)] = (image, calls, seconds)
            notes.extend(note for note in more if note not in notes)
        entries = []
        for sampler in request.samplers:
            image, calls, seconds = results[(sampler, request.seed)]
            rerun = results.get((sampler, request.rerun_seed()))
            entries.append(
                RaceEntry(
                    sampler=sampler,
                    steps=request.steps_of(sampler),
                    model_calls=calls,
                    seconds=min(seconds, rerun[2]) if rerun else seconds,
                    image=image,
                    eta=request.eta if sampler == "DDIM" else None,
                    rerun_image=rerun[0] if rerun else None,
                    max_difference=max_pixel_difference(image, rerun[0]) if rerun else None,
                )
            )
        return RaceResult(request, tuple(entries), model, self.manager.placement.describe(), tuple(notes))

    def _race_run(
        self,
        request: RaceRequest,
        sampler: str,
        step_seed: int,
        loras: Sequence[AppliedLora],
        report: Callable[[float], None],
        cancel: threading.Event | None,
    ) -> tuple[Image.Image, int, float, list[str], str]:
        """One timed run: x_T from ``request.seed`` as the pipeline would draw it, and the noise of the steps from
        ``step_seed`` (the same generator, carried on, when it is ``request.seed``: exactly txt2img's draws).
        The time covers the whole pipeline call and the decode, not the wait for the GPU."""
        size = f"{request.width}x{request.height}"
        with self._job(sampler, [step_seed], f"racing {sampler} at {size}", loras) as job:
            pipe = job.pipeline
            generator = torch.Generator("cpu").manual_seed(request.seed)
            latents = _initial_latents(pipe, request.width, request.height, generator)
            if step_seed != request.seed:
                generator = torch.Generator("cpu").manual_seed(step_seed)
            calls = [0]

            def on_step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict:
                calls[0] = step + 1
                report((step + 1) / pipe.num_timesteps)
                if cancel is not None and cancel.is_set():
                    pipe._interrupt = True
                return tensors

            _synchronize(self.manager.placement.device)
            started = time.perf_counter()
            output = pipe(
                latents=latents,
                generator=[generator],
                eta=request.eta,
                **_generation_arguments(pipe, request, request.steps_of(sampler), on_step_end),
            )
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped: the race was interrupted and nothing was kept.")
            (image,), notes = decode_latents(pipe.vae, pipe.image_processor, output.images)
            _synchronize(self.manager.placement.device)
            seconds = time.perf_counter() - started
        return image, calls[0], seconds, notes, _model_name(job.model.source)


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU to finish queued work, so a timer reads the work done and not just the work queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _encode(vae: Any, x0: torch.Tensor) -> torch.Tensor:
    """The VAE's latents of ``x0`` (the posterior mean), scaled as the UNet expects (the inverse of what
    ``decode_latents`` undoes). The SDXL VAE overflows in float16, so it encodes in float32 when it says so."""

    def encode() -> torch.Tensor:
        with torch.inference_mode():
            moments = vae.encode(x0.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean
        config = vae.config
        mean = getattr(config, "latents_mean", None)
        std = getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean, device=moments.device, dtype=moments.dtype).view(1, -1, 1, 1)
            std_t = torch.tensor(std, device=moments.device, dtype=moments.dtype).view(1, -1, 1, 1)
            return (moments - mean_t) * config.scaling_factor / std_t
        return moments * config.scaling_factor

    dtype = vae.dtype
    if dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        with float32_vae(vae):
            return encode().to(dtype)
    latents = encode()
    if dtype != torch.float32 and torch.isnan(latents).any():
        with float32_vae(vae):
            return encode().to(dtype)
    return latents
