"""What the Lab is asked (its requests, noise schedules and limits) and its example picture: the part of the Lab
the page is built from, without torch or diffusers, so the Lab tab is built while they still load
(``studio/startup.py``). The Lab's work is in ``studio/lab.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from studio.errors import InvalidRequest
from studio.requests import RANDOM_SEED
from studio.schedulers import DEFAULT_SAMPLER
from studio.validation import MAX_SEED, check_range

if TYPE_CHECKING:
    from diffusers import DDPMScheduler

NUM_TRAIN_TIMESTEPS = 1000
"""T: the timesteps Stable Diffusion (and DDPM) were trained with; t runs over 0..T-1."""
STRIP_TIMESTEPS = (0, 100, 250, 500, 750, 999)
LAB_MAX_PIXELS = 512 * 512
"""Pictures in the forward process are scaled down to this: the lesson needs no more, and it keeps moves instant."""
STRIP_SIDE = 128
MAX_FRAMES = 40
"""Most frames one filmstrip may hold: each frame is two VAE decodes."""
DEFAULT_RACE_SAMPLERS = ("DDPM", "DDIM", "Euler", "Euler a", "DPM++ 2M Karras")
STOCHASTIC_NOTE = "fresh step noise"

ProgressCallback = Callable[[int, int], None]
"""Called after every denoising step with (steps done, steps in all)."""
RaceProgress = Callable[[int, int, str], None]
"""Called after every denoising step of a race with (steps done, steps in all, what is running)."""


# --- Noise schedules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseSchedule:
    """A beta schedule as diffusers names it (``beta_schedule``), with what users know it as."""

    name: str
    label: str
    beta_start: float
    beta_end: float
    color: tuple[int, int, int]

    def scheduler(self) -> DDPMScheduler:
        """A new diffusers scheduler with this schedule over T = 1000 training timesteps.

        New every time: ``add_noise`` moves the scheduler's tensors to the sample's device, so one shared between
        threads would be changed under another thread's feet. Building one takes well under a millisecond.
        """
        from diffusers import DDPMScheduler

        return DDPMScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
            beta_schedule=self.name,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
        )


SCHEDULES: dict[str, NoiseSchedule] = {
    schedule.name: schedule
    for schedule in (
        # beta_start and beta_end mean nothing to the cosine schedule; diffusers ignores them there.
        NoiseSchedule("linear", "linear (DDPM)", 0.0001, 0.02, (37, 99, 235)),
        NoiseSchedule("scaled_linear", "scaled linear (Stable Diffusion)", 0.00085, 0.012, (234, 88, 12)),
        NoiseSchedule("squaredcos_cap_v2", "cosine (improved DDPM)", 0.0001, 0.02, (22, 163, 74)),
    )
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(SCHEDULES)
DEFAULT_SCHEDULE = "scaled_linear"


def check_schedule(name: object) -> NoiseSchedule:
    try:
        return SCHEDULES[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise InvalidRequest(f"unknown noise schedule {name!r}; choose one of: {', '.join(SCHEDULE_NAMES)}") from None


def check_timestep(value: object) -> int:
    return check_range("timestep", value, 0, NUM_TRAIN_TIMESTEPS - 1)


def example_scene(size: int = 256) -> Image.Image:
    """A small drawn landscape (sky, sun, hills, a house, a tree) to noise when no picture is uploaded.

    Drawn in code so the studio ships no binary files; flat colours and sharp edges make it plain how the noise
    first hides the fine details and only much later the large shapes.
    """
    scale = size / 256
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)

    def box(*values: float) -> list[float]:
        return [v * scale for v in values]

    for y in range(size):  # sky: deep blue above, pale near the horizon
        mix = y / size
        draw.line([(0, y), (size, y)], fill=(int(70 + 120 * mix), int(130 + 90 * mix), int(220 + 25 * mix)))
    draw.ellipse(box(176, 24, 224, 72), fill=(255, 214, 64))
    draw.ellipse(box(-60, 140, 150, 300), fill=(74, 140, 66))
    draw.ellipse(box(100, 150, 320, 320), fill=(56, 120, 52))
    draw.rectangle(box(0, 200, 256, 256), fill=(92, 160, 72))
    draw.rectangle(box(60, 150, 136, 210), fill=(236, 226, 200))
    draw.polygon(box(52, 152, 98, 112, 144, 152), fill=(178, 48, 40))
    draw.rectangle(box(88, 176, 106, 210), fill=(110, 70, 40))
    draw.rectangle(box(114, 164, 130, 180), fill=(150, 200, 240))
    draw.rectangle(box(190, 150, 202, 214), fill=(100, 66, 36))
    draw.ellipse(box(166, 106, 226, 166), fill=(34, 100, 40))
    return image


# --- Requests ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardRequest:
    """Noise ``image`` (the example scene when None) to ``timestep`` with ``schedule``; ``seed`` picks eps."""

    image: Image.Image | None = None
    schedule: str = DEFAULT_SCHEDULE
    timestep: int = 250
    seed: int = 0


@dataclass(frozen=True)
class TrajectoryRequest:
    """Text to image, recording a frame after every ``every``-th model call (and after the last). A model call is a
    denoising step for most samplers; Heun and DPM++ SDE call the model twice per step."""

    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 20
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = RANDOM_SEED
    every: int = 5


@dataclass(frozen=True)
class RaceRequest:
    """The same prompt, seed and starting noise x_T through each of ``samplers``. DDPM gets ``ddpm_steps`` (it
    was made for hundreds of steps), the others ``num_inference_steps``; ``eta`` is DDIM's (0: deterministic, 1:
    as much fresh noise per step as DDPM). With ``rerun`` each sampler runs again from the same x_T with other
    step noise: a sampler that gives the same picture both times is deterministic given x_T."""

    prompt: str
    negative_prompt: str = ""
    samplers: tuple[str, ...] = DEFAULT_RACE_SAMPLERS
    num_inference_steps: int = 20
    ddpm_steps: int = 50
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = RANDOM_SEED
    eta: float = 0.0
    rerun: bool = True

    def steps_of(self, sampler: str) -> int:
        return self.ddpm_steps if sampler == "DDPM" else self.num_inference_steps

    def rerun_seed(self) -> int:
        """The seed of the rerun's step noise (its x_T stays that of ``seed``)."""
        return (self.seed + 1) % (MAX_SEED + 1)
