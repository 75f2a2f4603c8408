"""What a model source (a Hub id, a local diffusers folder, a single checkpoint file) is, told without loading it.

Nothing here imports torch or diffusers: the page is built from these answers (the size sliders' start, the
examples) while the heavy libraries still load in the background (``studio/startup.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.micro.location import MICRO_CROSS_ATTENTION_DIM, resolve_alias


def looks_local(source: str) -> bool:
    """Whether ``source`` names a file or folder rather than a Hub id (``org/name``)."""
    path = Path(source).expanduser()
    return (
        path.exists()
        or source.startswith((".", "/", "~", "\\"))
        or source.endswith((".safetensors", ".ckpt", ".pt", ".bin", ".pth"))
        or source.count("/") > 1
    )


def display_name(source: str) -> str:
    """How messages name a model: a Hub id as it is, a local model by its file or folder name, never its path."""
    return Path(source).name if looks_local(source) else source


def _local_config(source: str, component: str) -> dict[str, Any]:
    """A component's config.json in a local diffusers folder (``micro`` included), read without loading weights."""
    return json.loads((Path(resolve_alias(source)).expanduser() / component / "config.json").read_text())


def native_side_hint(source: str) -> int | None:
    """The side in pixels a local diffusers folder was trained at, read from its configs without loading any
    weights (so the size sliders can start there before the model loads); None when it cannot be told."""
    try:
        unet, vae = _local_config(source, "unet"), _local_config(source, "vae")
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_micro_model(source: str) -> bool:
    """Whether ``source`` is the micro model (the committed one or a retrained one), told from its UNet's config
    as ``model_family`` tells it once loaded; False for anything that cannot be read before loading."""
    try:
        return _local_config(source, "unet").get("cross_attention_dim") == MICRO_CROSS_ATTENTION_DIM
    except (OSError, ValueError, AttributeError):
        return False
