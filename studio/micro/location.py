"""Where the committed micro model lives and the names that select it (``--model micro``).

Kept free of torch and diffusers so that the settings can name the micro model before anything heavy loads.
"""

from __future__ import annotations

from pathlib import Path

MICRO_MODEL = "micro"
"""``--model micro`` selects the committed micro model."""
MICRO_CONTROLNET = "micro-controlnet"
"""The micro model's Canny ControlNet, as ``--controlnet-model`` and the PNG metadata name it."""
MICRO_FOLDER = Path(__file__).resolve().parents[2] / "assets" / "micro"
CONTROLNET_SUBFOLDER = "controlnet"
MICRO_FAMILY = "Micro"
"""The model family the studio shows for it (next to SD 1.x, SD 2.x, SDXL)."""
MICRO_CROSS_ATTENTION_DIM = 64
"""The width of the micro text encoder: no Stable Diffusion release is this narrow (768, 1024, 2048), so it tells
the micro model from the rest without a file of its own."""

_ALIASES = {MICRO_MODEL: MICRO_FOLDER, MICRO_CONTROLNET: MICRO_FOLDER / CONTROLNET_SUBFOLDER}


def resolve_alias(source: str) -> str:
    """The folder behind ``micro`` or ``micro-controlnet``; any other source unchanged."""
    folder = _ALIASES.get(source.strip().lower())
    return str(folder) if folder is not None else source
