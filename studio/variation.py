"""Variation seeds and "Resize seed from", A1111's "Extra" seed options: a picture's starting noise moved part of
the way towards another seed's, and built around the noise its seed gives at another size.

With a variation strength above 0, every image of a batch keeps the one seed and image *i* gets the variation seed
``subseed + i``: the batch shows variations of one picture. The starting noise is the spherical interpolation
(slerp) from the seed's noise to the variation seed's at that strength, so it stays noise of the scale the model
expects (a straight mix of two noises would have a smaller norm, and come out blurry and grey). At 0 it is the
seed's picture; at 1, with a sampler that draws no noise of its own while stepping, the variation seed's.

"Resize seed from" a size: the noise the seed (and the variation seed) give at that size is drawn afresh and put in
the middle of the picture's own noise (cropped to it when the picture is smaller), so a composition found at one
size keeps much of itself when the picture is made larger or smaller. The noise around it stays the seed's own.

diffusers draws the starting noise inside the pipeline, so it is varied where it is drawn, in one of three ways,
each keeping every other random draw where it was (so a small strength stays near the seed's own picture):
- text to image and ControlNet are handed ``latents``: the noise drawn here from the same per-image generators the
  pipeline is given, as it would draw it first, then varied. The generators move on by that draw, so the noise an
  ancestral sampler draws later is the same as without a variation;
- a pipeline that noises a picture (image to image, inpainting below strength 1, the hires fix's second pass) gets
  a scheduler whose ``add_noise`` varies the noise the pipeline drew before adding it;
- inpainting at strength 1 starts from pure noise, drawn after the picture's encoding has drawn from the same
  generators, and adds none; its ``prepare_latents`` is wrapped to vary the noise it returns.
The scheduler and the pipeline are the job's own (``model_manager._derive`` builds them per job), so no other
request sees the change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DiffusionPipeline, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

_PARALLEL = 0.9995
"""Above this cosine the two noises are as good as parallel; slerp's division would be unstable, so mix straight."""


@dataclass(frozen=True)
class Variation:
    """Image *i*'s variation seed ``subseeds[i]`` and how far (0-1) its noise moves towards that seed's; with
    ``resize_from`` (a width and height in pixels), the size whose noise of image *i*'s seed ``seeds[i]`` the
    noise is built around."""

    subseeds: tuple[int, ...]
    strength: float
    seeds: tuple[int, ...] = ()
    resize_from: tuple[int, int] | None = None

    def vary(self, noise: torch.Tensor, scale_factor: int) -> torch.Tensor:
        """``noise`` (one image per variation seed; latents ``scale_factor`` times smaller than the picture) moved
        ``strength`` of the way to the variation seeds' noise, and with ``resize_from`` built around the seeds'
        noise at that size. Every noise is drawn on the CPU as diffusers draws a seed's, so it is the same on every
        device."""
        if noise.shape[0] != len(self.subseeds):
            raise ValueError(f"{noise.shape[0]} noises for {len(self.subseeds)} variation seeds")
        if self.resize_from is None:
            return self._towards_subseeds(noise)
        width, height = self.resize_from
        shape = (*noise.shape[:-2], max(1, height // scale_factor), max(1, width // scale_factor))
        drawn = randn_tensor(shape, generator=generators(self.seeds), device=noise.device, dtype=noise.dtype)
        return centred(self._towards_subseeds(drawn), noise)

    def _towards_subseeds(self, noise: torch.Tensor) -> torch.Tensor:
        if not self.strength:
            return noise
        towards = randn_tensor(noise.shape, generator=generators(self.subseeds), device=noise.device, dtype=noise.dtype)
        return slerp(self.strength, noise, towards)


def centred(inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """``outer`` with ``inner`` put in its middle (the middle of ``inner`` where it is the larger, side by side)."""
    placed = outer.clone()
    spans = []
    for inner_side, outer_side in zip(inner.shape[-2:], outer.shape[-2:], strict=True):
        side = min(inner_side, outer_side)
        spans.append(((outer_side - side) // 2, (inner_side - side) // 2, side))
    (to_y, from_y, rows), (to_x, from_x, columns) = spans
    middle = inner[..., from_y : from_y + rows, from_x : from_x + columns]
    placed[..., to_y : to_y + rows, to_x : to_x + columns] = middle
    return placed


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, from its own seed: image *i* is the same made alone or in a batch."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def slerp(strength: float, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation, image by image, from ``start`` (0) to ``end`` (1), computed in float32."""
    low, high = start.flatten(1).float(), end.flatten(1).float()
    cosine = (low / low.norm(dim=1, keepdim=True) * (high / high.norm(dim=1, keepdim=True))).sum(dim=1, keepdim=True)
    cosine = cosine.clamp(-1.0, 1.0)
    omega = torch.acos(cosine)
    sine = torch.sin(omega)
    parallel = cosine > _PARALLEL
    safe = torch.where(parallel, torch.ones_like(sine), sine)
    first = torch.where(parallel, 1.0 - strength, torch.sin((1.0 - strength) * omega) / safe)
    second = torch.where(parallel, torch.full_like(sine, strength), torch.sin(strength * omega) / safe)
    return (first * low + second * high).reshape(start.shape).to(start.dtype)


def starting_latents(
    pipe: DiffusionPipeline, seed_generators: Sequence[torch.Generator], variation: Variation, width: int, height: int
) -> torch.Tensor:
    """The varied starting noise of a pipeline that starts from pure noise, for its ``latents`` argument.

    Drawn from ``seed_generators`` (the ones the pipeline is then given) in the shape, dtype and order diffusers
    draws it in, so at strength 0 it is the noise the pipeline would have drawn itself."""
    factor = pipe.vae_scale_factor
    shape = (len(seed_generators), pipe.vae.config.latent_channels, height // factor, width // factor)
    noise = randn_tensor(shape, generator=list(seed_generators), device=pipe._execution_device, dtype=pipe.unet.dtype)
    return variation.vary(noise, factor)


def vary_added_noise(scheduler: SchedulerMixin, variation: Variation, scale_factor: int) -> None:
    """Make ``scheduler`` (a job's own) vary the noise a pipeline adds to a picture (its latents ``scale_factor``
    times smaller). The varied noise is kept, so an inpainting pipeline that adds the same noise again at every
    step gets the same variation each time."""
    add_noise: Callable[..., torch.Tensor] = scheduler.add_noise
    varied: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def add_varied_noise(original_samples: torch.Tensor, noise: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        key = (id(noise), *noise.shape)
        if key not in varied:
            varied[key] = (noise, variation.vary(noise, scale_factor))  # holding ``noise`` keeps its id unused
        return add_noise(original_samples, varied[key][1], *args, **kwargs)

    scheduler.add_noise = add_varied_noise  # type: ignore[method-assign]


def vary_drawn_noise(pipe: DiffusionPipeline, variation: Variation) -> None:
    """Make an inpainting pipeline (a job's own) that starts from pure noise (strength 1) start from the varied
    noise. Its ``prepare_latents`` returns the latents (the noise times the scheduler's starting sigma) and the noise
    it adds again at every step (with a 4-channel UNet); both become the varied noise's."""
    prepare: Callable[..., tuple[torch.Tensor, ...]] = pipe.prepare_latents

    def prepare_varied(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        _latents, noise, *rest = prepare(*args, **kwargs)
        varied = variation.vary(noise, pipe.vae_scale_factor)
        return (varied * pipe.scheduler.init_noise_sigma, varied, *rest)

    pipe.prepare_latents = prepare_varied
