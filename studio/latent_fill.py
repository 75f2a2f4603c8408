"""A1111's "latent nothing" masked content: the masked part of the starting latents is zeros, not the picture.

"fill" and "latent noise" change the picture before it is encoded, so they are pixel work (studio/images.py).
"latent nothing" cannot be: it zeroes the encoded latents themselves, where the (rounded) mask covers them, as A1111
does with ``inpainting_fill=3``. So the job encodes the picture with its own VAE, zeroes the masked latents and hands
them to the inpaint pipeline as its ``image`` (diffusers takes a 4-channel tensor as already encoded). An inpainting
UNet also gets the masked picture it is conditioned on, encoded the way the pipeline itself encodes it from pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

LATENT_NOTHING = "latent nothing"


def _encode(pipeline: DiffusionPipeline, pixels: torch.Tensor) -> torch.Tensor:
    """Latents of ``pixels`` (-1..1), the distribution's mode: the same picture always gives the same latents."""
    vae = pipeline.vae
    latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
    return latents * vae.config.scaling_factor


def latent_mask(mask: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """The mask at the latents' ``size`` (width, height), rounded to 0 or 1 as A1111 rounds it: 1 x 1 x h x w."""
    small = np.asarray(mask.convert("L").resize(size), dtype=np.float32) / 255
    return torch.from_numpy(np.around(small))[None, None]


def latent_nothing(pipeline: DiffusionPipeline, call: Mapping[str, Any]) -> dict[str, Any]:
    """The inpaint call's ``image`` as latents with zeros under the mask, and the ``masked_image_latents`` that go
    with them. ``call`` holds the PIL ``image`` and ``mask_image`` at the call's ``width`` x ``height``."""
    width, height = call["width"], call["height"]
    with torch.no_grad():
        pixels = pipeline.image_processor.preprocess(call["image"], height=height, width=width)
        latents = _encode(pipeline, pixels)
        keep = 1 - latent_mask(call["mask_image"], (latents.shape[3], latents.shape[2]))
        zeroed = latents * keep.to(device=latents.device, dtype=latents.dtype)
        masked = zeroed
        if pipeline.unet.config.in_channels == 9:  # an inpainting UNet sees the masked picture, as from pixels
            condition = pipeline.mask_processor.preprocess(call["mask_image"], height=height, width=width)
            masked = _encode(pipeline, pixels * (condition < 0.5))
    return {"image": zeroed, "masked_image_latents": masked}
