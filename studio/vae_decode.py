"""Decoding latents to pictures, with the recovery half-precision VAEs need.

The SD 1.x/2.x VAE sometimes overflows in float16 and returns NaN, which becomes a black image; the original SDXL
VAE always does (its config says ``force_upcast``). Pipelines run with ``output_type="latent"`` and the studio
decodes here: in the VAE's own dtype first, and again in float32 when that produced NaN, so the user gets the
picture and a note instead of a black square.

Large pictures are decoded in tiles (diffusers' tiled decode: overlapping tiles of the VAE's native size, blended
at the seams) past ``TILE_ABOVE_PIXELS`` per image, as if --vae-tiling were on for them alone. Below it the
decode is whole, exactly what plain diffusers makes: tiles change the picture a little at their seams and cost
time, and a whole decode of one image up to that size fits in the memory a GPU that runs the UNet there has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

UPCAST_NOTE = "The VAE returned NaN in {dtype}; the image was decoded again in float32."
TILE_ABOVE_PIXELS = 1536 * 1536
"""Pictures with more pixels than this are decoded in tiles. A whole decode needs memory in proportion to the
pixels (the SD VAE's last blocks hold 128 channels at full resolution; bench/gpu.py measures the peak at 1024,
1536 and 2048 pixels a side, tiled and whole). 1536x1536 is 2.25 times SDXL's native size and 9 times SD 1.x's:
past it a whole decode costs several GB more than the UNet run before it. The default --max-pixels (1024x1024)
stays below it, so by default nothing is tiled and results are those of plain diffusers."""


def vae_scale_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent along a side (8 for Stable Diffusion's VAEs)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def should_tile(vae: AutoencoderKL, latents: torch.Tensor, tile_above_pixels: int = TILE_ABOVE_PIXELS) -> bool:
    """Whether decoding ``latents`` needs tiles: one picture has more than ``tile_above_pixels`` pixels."""
    scale = vae_scale_factor(vae)
    return latents.shape[-1] * latents.shape[-2] * scale * scale > tile_above_pixels


@contextmanager
def tiled_vae(vae: AutoencoderKL, enabled: bool = True) -> Iterator[AutoencoderKL]:
    """The shared VAE with tiling on for the duration (when ``enabled``; kept on if --vae-tiling turned it on).
    The caller holds the GPU lock, so no one else sees it."""
    before = vae.use_tiling
    vae.use_tiling = before or enabled
    try:
        yield vae
    finally:
        vae.use_tiling = before


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
    vae: AutoencoderKL,
    image_processor: VaeImageProcessor,
    latents: torch.Tensor,
    *,
    upcast: bool | None = None,
    tile_above_pixels: int = TILE_ABOVE_PIXELS,
) -> tuple[list[Image.Image], list[str]]:
    """Decode ``latents`` to PIL images; the notes say whether float32 had to step in.

    ``upcast``: decode a float16 VAE in float32 from the start. None follows the VAE config's ``force_upcast``.
    diffusers' SD 1.x/2.x pipelines never upcast, and their VAE configs do not set the flag, which then defaults
    to True; so the service passes ``upcast`` itself, True only for SDXL's VAE, as diffusers' SDXL pipelines do.
    """
    notes: list[str] = []
    if upcast is None:
        upcast = bool(getattr(vae.config, "force_upcast", False))
    with tiled_vae(vae, should_tile(vae, latents, tile_above_pixels)):
        if vae.dtype == torch.float16 and upcast:
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
