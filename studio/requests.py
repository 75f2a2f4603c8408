"""Requests and results: frozen dataclasses that travel from the web layer through the service.

Field names follow diffusers' ``__call__`` arguments (``num_inference_steps``, ``guidance_scale``) so that the
path from a request to a pipeline call reads without translation. A request is validated once, at the service
boundary, and never changed afterwards; the service works on a validated copy with its seed resolved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from studio.loras import LoraSpec
from studio.schedulers import DEFAULT_SAMPLER
from studio.schedules import AUTOMATIC
from studio.soft_inpainting import SoftInpainting

RANDOM_SEED = -1
DEFAULT_HR_SCALE = 2.0
DEFAULT_HR_UPSCALER = "Latent"
DEFAULT_HR_STRENGTH = 0.7
"""A1111's hires fix defaults: twice the size, latent upscaling, a denoising strength of 0.7."""
MAX_CONTROL_WEIGHT = 2.0
"""The most a ControlNet's conditioning scale may be (the Control weight slider's end)."""


@dataclass(frozen=True)
class Txt2ImgRequest:
    """Text to image. ``seed=-1`` asks for a random seed; image *i* of the batch uses ``seed + i``.

    ``loras`` (in every generation request) are LoRAs to apply besides the ``<lora:name:weight>`` tags of the
    prompt; validation adds the prompt's tags to them, so the validated request lists every LoRA it applies.
    ``clip_skip`` (in every generation request) counts as A1111's does: 1 reads the text encoder's last layer, 2 the
    one before it (what anime models are trained on), up to 12; diffusers' ``clip_skip`` is one less.
    ``subseed`` and ``subseed_strength`` (in every generation request; A1111's names) are the variation seed and
    how far (0-1) the starting noise moves towards its noise (``studio/variation.py``). Above 0, every image keeps
    ``seed`` and image *i* gets the variation seed ``subseed + i``; ``subseed=-1`` asks for a random one.
    ``seed_resize_from_w`` and ``seed_resize_from_h`` (here and in ControlNet's request, where pictures start from
    noise; A1111's "Resize seed from", 0 for off) build the starting noise around the noise the seed gives at that
    size, so a picture found at one size keeps much of its composition at another (``studio/variation.py``).
    ``tiling`` (in every generation request; A1111's name) makes pictures that repeat without a seam
    (``studio/tiling.py``). ``scheduler`` (in every generation request but Compare; A1111's name) is A1111's
    schedule type, the noise levels the sampler visits (``studio/schedules.py``); "Automatic" keeps the sampler's.

    ``enable_hr`` turns on the hires fix (``studio/hires.py``); it and its ``hr_*`` fields and
    ``denoising_strength`` have A1111's names, as diffusers has no such argument. ``hr_second_pass_steps`` 0 means
    as many as ``num_inference_steps``; ``hr_resize_x``/``hr_resize_y`` other than 0 replace ``hr_scale``;
    ``hr_sampler_name`` "" (or "Use same sampler") runs the second pass with ``sampler``; ``hr_prompt`` and
    ``hr_negative_prompt`` "" run it with ``prompt`` and ``negative_prompt``.
    """

    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = RANDOM_SEED
    batch_size: int = 1
    loras: tuple[LoraSpec, ...] = ()
    clip_skip: int = 1
    subseed: int = RANDOM_SEED
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    tiling: bool = False
    enable_hr: bool = False
    hr_scale: float = DEFAULT_HR_SCALE
    hr_upscaler: str = DEFAULT_HR_UPSCALER
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    denoising_strength: float = DEFAULT_HR_STRENGTH
    hr_sampler_name: str = ""
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    scheduler: str = AUTOMATIC

    task: ClassVar[str] = "txt2img"

    def to_record(self) -> dict[str, Any]:
        return _record(self)


def _record(request: Any) -> dict[str, Any]:
    """The request as plain JSON-able data (for the lossless PNG chunk); pictures are replaced by their sizes."""
    record: dict[str, Any] = {"task": request.task}
    for item in fields(request):
        value = getattr(request, item.name)
        if isinstance(value, Image.Image):
            record[f"{item.name}_size"] = list(value.size)
        elif isinstance(value, tuple) and value and all(is_dataclass(v) for v in value):
            record[item.name] = [asdict(v) for v in value]
        elif is_dataclass(value) and not isinstance(value, type):
            record[item.name] = asdict(value)
        elif value is not None:
            record[item.name] = value
    return record


@dataclass(frozen=True)
class Img2ImgRequest:
    """Image to image: ``image`` resized to ``width x height`` by ``resize_mode``, then ``strength`` of the
    denoising schedule run on it (0 keeps the image, 1 ignores it)."""

    image: Image.Image
    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    strength: float = 0.75
    width: int = 512
    height: int = 512
    resize_mode: str = "Just resize"
    seed: int = RANDOM_SEED
    batch_size: int = 1
    loras: tuple[LoraSpec, ...] = ()
    clip_skip: int = 1
    subseed: int = RANDOM_SEED
    subseed_strength: float = 0.0
    tiling: bool = False
    scheduler: str = AUTOMATIC

    task: ClassVar[str] = "img2img"

    def to_record(self) -> dict[str, Any]:
        return _record(self)


@dataclass(frozen=True)
class InpaintRequest:
    """Inpainting: repaint where ``mask_image`` is white, keep the rest of ``image`` pixel for pixel.

    ``masked_content`` is what the model starts from in the mask ("original", "fill", "latent noise",
    "latent nothing");
    ``inpaint_only_masked`` repaints a crop around the mask (plus ``padding`` pixels) at full resolution and pastes
    it back; ``mask_blur`` softens the mask's edge so the repainted region meets the rest without a seam.
    ``soft_inpainting`` (A1111's soft inpainting; None for off) repaints each pixel as much as the blurred mask
    says (``studio/soft_inpainting.py``).
    """

    image: Image.Image
    mask_image: Image.Image
    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    strength: float = 0.75
    mask_blur: int = 4
    mask_blur_y: int | None = None
    """The vertical blur when it differs from ``mask_blur`` (A1111's ``mask_blur_y``); None: the same."""
    masked_content: str = "original"
    inpaint_only_masked: bool = False
    padding: int = 32
    invert_mask: bool = False
    seed: int = RANDOM_SEED
    batch_size: int = 1
    loras: tuple[LoraSpec, ...] = ()
    clip_skip: int = 1
    subseed: int = RANDOM_SEED
    subseed_strength: float = 0.0
    tiling: bool = False
    scheduler: str = AUTOMATIC
    soft_inpainting: SoftInpainting | None = None

    task: ClassVar[str] = "inpaint"

    def to_record(self) -> dict[str, Any]:
        return _record(self)


@dataclass(frozen=True)
class ControlNetRequest:
    """Text to image guided by a Canny edge map of ``image`` (or ``image`` itself with preprocessor "none").

    ``controlnet_conditioning_scale`` weighs the ControlNet (0 ignores it); it acts from
    ``control_guidance_start`` to ``control_guidance_end`` (fractions of the steps). The output size follows the
    control image (multiples of 8) unless ``width`` and ``height`` are given; ``resize_mode`` (A1111's) fits the
    control image to that size.
    """

    image: Image.Image
    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    preprocessor: str = "canny"
    low_threshold: int = 100
    high_threshold: int = 200
    controlnet_conditioning_scale: float = 1.0
    control_guidance_start: float = 0.0
    control_guidance_end: float = 1.0
    width: int | None = None
    height: int | None = None
    seed: int = RANDOM_SEED
    batch_size: int = 1
    resize_mode: str = "Crop and resize"
    loras: tuple[LoraSpec, ...] = ()
    clip_skip: int = 1
    subseed: int = RANDOM_SEED
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    tiling: bool = False
    scheduler: str = AUTOMATIC

    task: ClassVar[str] = "controlnet"

    def to_record(self) -> dict[str, Any]:
        return _record(self)


GenerationRequest = Txt2ImgRequest | Img2ImgRequest | InpaintRequest | ControlNetRequest


@dataclass(frozen=True)
class CompareRequest:
    """Every prompt crossed with every value of one axis ("Sampler", "Steps", "CFG scale", "Seed", "Strength",
    "Var. seed", "Var. strength"), all else equal, the seed included. With ``image`` the cells are image to image
    (at ``strength``). ``subseed`` and ``subseed_strength`` are every cell's variation seed and strength.

    The prompts go across and the axis values down; with a ``column_axis`` (A1111's X/Y plot) there is one prompt
    and its values go across instead, so two settings are swept against each other (sampler x steps)."""

    prompts: tuple[str, ...]
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    num_inference_steps: int = 25
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = RANDOM_SEED
    axis: str = "None"
    axis_values: tuple[str | int | float, ...] = ()
    image: Image.Image | None = None
    strength: float = 0.75
    clip_skip: int = 1
    subseed: int = RANDOM_SEED
    subseed_strength: float = 0.0
    tiling: bool = False
    column_axis: str = "None"
    column_values: tuple[str | int | float, ...] = ()

    task: ClassVar[str] = "compare"

    def to_record(self) -> dict[str, Any]:
        return _record(self)


@dataclass(frozen=True)
class CompareCell:
    """One cell of a comparison: its prompt, its values on the axes (None without one), and its image."""

    prompt: str
    axis_value: str | int | float | None
    image: GeneratedImage
    column_value: str | int | float | None = None


@dataclass(frozen=True)
class CompareResult:
    """The cells row by row (one row per axis value), the labelled grid, and each prompt's words marked where
    they differ from the others."""

    request: CompareRequest
    cells: tuple[CompareCell, ...]
    grid: GeneratedImage
    prompt_diff: tuple[tuple[tuple[str, bool], ...], ...]
    model: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratedImage:
    """One image of a result: the picture (with its PNG metadata in ``info``), its seed and where it was saved."""

    image: Image.Image
    seed: int
    parameters: str
    path: Path | None = None
    image_format: str = "png"
    """The format it was saved in (and is offered for download in): png, jpeg or webp."""
    subseed: int | None = None
    """Its variation seed, when it was made with one."""


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced. ``request`` is the validated request with its seed resolved; ``notes`` tells
    the user about anything the studio did on their behalf (such as decoding again in float32)."""

    request: GenerationRequest
    images: tuple[GeneratedImage, ...]
    model: str
    notes: tuple[str, ...] = ()
    control_image: GeneratedImage | None = None
    """The edge map a ControlNet followed, saved beside the images."""

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(item.seed for item in self.images)
