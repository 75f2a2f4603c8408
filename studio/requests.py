"""Requests and results: frozen dataclasses that travel from the web layer through the service.

Field names follow diffusers' ``__call__`` arguments (``num_inference_steps``, ``guidance_scale``) so that the
path from a request to a pipeline call reads without translation. A request is validated once, at the service
boundary, and never changed afterwards; the service works on a validated copy with its seed resolved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from studio.schedulers import DEFAULT_SAMPLER

RANDOM_SEED = -1


@dataclass(frozen=True)
class Txt2ImgRequest:
    """Text to image. ``seed=-1`` asks for a random seed; image *i* of the batch uses ``seed + i``."""

    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = RANDOM_SEED
    batch_size: int = 1

    def to_record(self) -> dict[str, Any]:
        """The request as plain JSON-able data (for the lossless PNG chunk)."""
        return {"task": "txt2img", **asdict(self)}


@dataclass(frozen=True)
class GeneratedImage:
    """One image of a result: the picture (with its PNG metadata in ``info``), its seed and where it was saved."""

    image: Image.Image
    seed: int
    parameters: str
    path: Path | None = None


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced. ``request`` is the validated request with its seed resolved; ``notes`` tells
    the user about anything the studio did on their behalf (such as decoding again in float32)."""

    request: Txt2ImgRequest
    images: tuple[GeneratedImage, ...]
    model: str
    notes: tuple[str, ...] = ()

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(item.seed for item in self.images)
