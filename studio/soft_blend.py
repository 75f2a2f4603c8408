"""Soft inpainting's blending, done in diffusers' ``callback_on_step_end`` of the inpainting pipeline.

After each denoising step the sample sits at the next step's noise level sigma. Each pixel is then blended
towards the original picture's latents, noised to that same level, by the weight ``w = m ** (sigma ** bias *
strength)``, where ``m`` (0-1) is the blurred mask at that pixel: a fully masked pixel (m = 1) stays as denoised,
an unmasked one (m = 0) stays the original, and a faint one keeps the original while the noise is high and is
released as it falls. The blend keeps the per-pixel length of the latent vector (a power mean of the two lengths,
``transition_contrast`` the power) so partly masked pixels do not wash out towards grey. With no custom pipeline:
the pipeline is told to repaint wherever the mask is not 0, and this callback does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from studio.soft_inpainting import SoftInpainting

StepCallback = Callable[[DiffusionPipeline, int, Any, dict[str, Any]], dict[str, Any]]


def repaint_support(soft_mask: Image.Image) -> Image.Image:
    """The mask the pipeline gets: white wherever the blurred mask is not black, so the pipeline's own hard blend
    leaves every partly masked pixel to the soft one."""
    return soft_mask.convert("L").point(lambda value: 255 if value > 0 else 0)


def latent_mask(soft_mask: Image.Image, latent_size: tuple[int, int]) -> torch.Tensor:
    """The blurred mask averaged down to the latents' ``(width, height)``, as a (1, 1, h, w) tensor in 0-1."""
    small = soft_mask.convert("L").resize(latent_size, Image.BOX)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)[None, None]


def blend(original: torch.Tensor, denoised: torch.Tensor, weight: torch.Tensor, power: float) -> torch.Tensor:
    """``original`` and ``denoised`` mixed by ``weight`` (0: original, 1: denoised) per pixel, the mix rescaled to
    the ``power`` mean of the two latent vectors' lengths (in float64: the powers grow large)."""
    wide = weight.to(torch.float64)
    a, b = original.to(torch.float64), denoised.to(torch.float64)
    mixed = a * (1 - wide) + b * wide
    length_a = torch.linalg.vector_norm(a, dim=1, keepdim=True)
    length_b = torch.linalg.vector_norm(b, dim=1, keepdim=True)
    wanted = ((1 - wide) * length_a.pow(power) + wide * length_b.pow(power)).pow(1 / power)
    mixed = mixed * (wanted / (torch.linalg.vector_norm(mixed, dim=1, keepdim=True) + 1e-5))
    return mixed.to(denoised.dtype)


def weight_at(mask: torch.Tensor, sigma: float, settings: SoftInpainting) -> torch.Tensor:
    """How much of the denoised sample each pixel keeps at noise level ``sigma``."""
    return mask.pow(sigma**settings.schedule_bias * settings.preservation_strength)


class SoftBlend:
    """The step callback for one inpainting call: ``picture`` is the picture the pipeline starts from, ``mask``
    the blurred mask at its size, ``seeds`` the images' seeds (the original is noised with noise of their own)."""

    def __init__(self, settings: SoftInpainting, picture: Image.Image, mask: Image.Image, seeds: Sequence[int]) -> None:
        self.settings = settings
        self.picture = picture
        self.mask = mask
        self.seeds = list(seeds)
        self._original: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None
        self._weights_mask = torch.zeros(1)

    def _prepare(self, pipe: DiffusionPipeline, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._original is None or self._noise is None:
            height, width = latents.shape[-2:]
            scale = pipe.vae_scale_factor
            pixels = pipe.image_processor.preprocess(self.picture, height=height * scale, width=width * scale)
            vae = pipe.vae
            encoded = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
            self._original = encoded.to(latents.device, latents.dtype)
            noise = [
                torch.randn(latents.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
                for seed in self.seeds
            ]
            self._noise = torch.stack(noise).to(latents.device, latents.dtype)
            self._weights_mask = latent_mask(self.mask, (width, height)).to(latents.device)
        return self._original, self._noise

    def __call__(self, pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        scheduler = pipe.scheduler
        timesteps = scheduler.timesteps
        # The pipeline runs the last ``num_timesteps`` of the schedule (image to image skips the first ones).
        following = len(timesteps) - pipe.num_timesteps + step + 1
        if following >= len(timesteps):
            return tensors  # the last step: the result is pasted back through the blurred mask
        latents = tensors["latents"]
        original, noise = self._prepare(pipe, latents)
        next_timestep = timesteps[following : following + 1]
        noised = scheduler.add_noise(original.expand_as(latents), noise, next_timestep)
        alpha = float(scheduler.alphas_cumprod[round(float(next_timestep[0]))])
        sigma = ((1 - alpha) / alpha) ** 0.5
        weight = weight_at(self._weights_mask, sigma, self.settings)
        tensors["latents"] = blend(noised, latents, weight, self.settings.transition_contrast)
        return tensors


def chained(first: StepCallback, then: StepCallback) -> StepCallback:
    """A step callback running ``first`` and then ``then`` on what it returns."""

    def both(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        return then(pipe, step, timestep, first(pipe, step, timestep, tensors))

    return both
