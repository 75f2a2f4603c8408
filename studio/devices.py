"""Where models run and in what precision, chosen once at start-up.

``auto`` picks the fastest safe choice: CUDA in float16, Apple's MPS in float16, otherwise the CPU in float32
(half precision on the CPU is slow and loses accuracy for no memory a laptop needs). A choice the machine cannot
honour fails at start-up with a message, not on the first generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.settings import SettingsError

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class Placement:
    """A device and the dtype weights are loaded in there."""

    device: torch.device
    dtype: torch.dtype

    def describe(self) -> str:
        return f"{self.device.type} / {str(self.dtype).removeprefix('torch.')}"


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_placement(device: str, dtype: str) -> Placement:
    """Turn the ``--device`` and ``--dtype`` settings into a placement this machine supports."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    elif device == "mps" and not _mps_available():
        raise SettingsError("--device mps was asked for, but this PyTorch has no Apple MPS backend; use --device auto")
    chosen = (torch.float32 if device == "cpu" else torch.float16) if dtype == "auto" else _DTYPES[dtype]
    if device == "cpu" and chosen == torch.float16:
        raise SettingsError("--dtype float16 is not supported on the CPU; use float32 (or bfloat16 to save memory)")
    if device == "mps" and chosen == torch.bfloat16:
        raise SettingsError("--dtype bfloat16 is not supported on Apple MPS; use float16 or float32")
    return Placement(torch.device(device), chosen)
