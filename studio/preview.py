"""Live previews: a picture of the latents while they are denoised, cheap enough to show every few steps.

The default is an approximation: each latent channel mixed linearly into RGB at latent resolution (a 4x3
matrix fitted to the Stable Diffusion VAEs), which costs microseconds. The full VAE decode is the exact picture,
at the cost of a decode. The preview is shown; it never changes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL
from PIL import Image

PREVIEW_MODES = ("approx", "vae")

# Latent channel -> RGB contributions of the SD 1.x/2.x and SDXL VAEs (least-squares fits of decoded colour).
_SD_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
_SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)


@dataclass(frozen=True)
class PreviewOptions:
    """How often (every N denoising steps; 0 = never) and how (``approx`` or ``vae``) to preview."""

    every: int = 5
    mode: str = "approx"


def approximate(latents: torch.Tensor, sdxl: bool, size: tuple[int, int]) -> Image.Image:
    """The first latent of a batch as a rough RGB picture of ``size`` (latent channels mixed linearly)."""
    factors = torch.tensor(_SDXL_FACTORS if sdxl else _SD_FACTORS, dtype=torch.float32)
    latent = latents[0, :4].detach().float().cpu()
    rgb = torch.einsum("chw,cr->rhw", latent, factors)
    if sdxl:
        rgb = rgb + torch.tensor(_SDXL_BIAS).view(3, 1, 1)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels).resize(size, Image.BILINEAR)


def decode_first(vae: AutoencoderKL, latents: torch.Tensor) -> Image.Image:
    """The first latent of a batch through the full VAE decoder: the exact picture of the current sample."""
    scaled = latents[:1].to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor
    with torch.inference_mode():
        image = vae.decode(scaled, return_dict=False)[0][0]
    pixels = ((image.float().clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels)
