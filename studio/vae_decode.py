"""Decoding latents to pictures, with the recovery half-precision VAEs need.

The SD 1.x/2.x VAE sometimes overflows in float16 and returns NaN, which becomes a black image; the original SDXL
VAE always does (its config says ``force_upcast``). Pipelines run with ``output_type="latent"`` and the studio
decodes here: in the VAE's own dtype first, and again in float32 when that produced NaN, so the user gets the
picture and a note instead of a black square.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

UPCAST_NOTE = "The VAE returned NaN in {dtype}; the image was decoded again in float32."


@contextmanager
def float32_vae(vae: AutoencoderKL) -> Iterator[AutoencoderKL]:
    """The shared VAE in float32 for the duration; the caller holds the GPU lock, so no one else sees it."""
    dtype = vae.dtype
    vae.to(torch.float32)
    try:
        yield vae
    finally:
        vae.to(dtype)


def _decode(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    config = vae.config
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    with torch.inference_mode():
        return vae.decode(latents, return_dict=False)[0]


def decode_latents(
    vae: AutoencoderKL, image_processor: VaeImageProcessor, latents: torch.Tensor
) -> tuple[list[Image.Image], list[str]]:
    """Decode ``latents`` to PIL images; the notes say whether float32 had to step in."""
    notes: list[str] = []
    if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        with float32_vae(vae):
            decoded = _decode(vae, latents)
    else:
        decoded = _decode(vae, latents)
        if vae.dtype != torch.float32 and torch.isnan(decoded).any():
            notes.append(UPCAST_NOTE.format(dtype=str(vae.dtype).removeprefix("torch.")))
            with float32_vae(vae):
                decoded = _decode(vae, latents)
    images = image_processor.postprocess(decoded.float(), output_type="pil")
    return list(images), notes
