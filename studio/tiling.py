"""Tiling, as A1111's checkbox has it: pictures that repeat without a seam, for textures and patterns.

Every 2D convolution of the UNet, the VAE and the ControlNet pads circularly instead of with zeros, so the left
edge sees the right edge as its neighbour (and the top the bottom) at every layer. Attention has no notion of
position and the group norms are global, so the whole model treats the picture as a torus, and what it draws
continues across the edges. The modules are shared by every task and request, so the change is made inside a job
(which holds the GPU lock) and undone when it ends, on Stop and on errors too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from diffusers import DiffusionPipeline
from torch import nn

TILED_MODULES = ("unet", "vae", "controlnet")
"""The pipeline modules whose convolutions pad circularly (the text encoders have none)."""


def padded_convolutions(pipe: DiffusionPipeline) -> list[nn.Conv2d]:
    """The 2D convolutions of ``pipe``'s picture modules that pad their input (LoRA layers' own included)."""
    layers: list[nn.Conv2d] = []
    for name in TILED_MODULES:
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            layers += [layer for layer in module.modules() if isinstance(layer, nn.Conv2d) and any(layer.padding)]
    return layers


@contextmanager
def tiled(pipe: DiffusionPipeline, enabled: bool = True) -> Iterator[None]:
    """While open (and ``enabled``), ``pipe``'s convolutions pad circularly: what it makes tiles seamlessly."""
    if not enabled:
        yield
        return
    changed = [layer for layer in padded_convolutions(pipe) if layer.padding_mode == "zeros"]
    for layer in changed:
        layer.padding_mode = "circular"
    try:
        yield
    finally:
        for layer in changed:
            layer.padding_mode = "zeros"
