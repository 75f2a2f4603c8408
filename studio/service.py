"""The studio's service: validate -> seed -> plan -> derive a pipeline -> run -> decode -> finish -> save.

It knows nothing of Gradio or HTTP: the web layers turn their inputs into request dataclasses, call a method
here, and show the result. Every check happens before the GPU is taken, and every message says what to fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from studio import __version__, compare, images
from studio.embeddings import LoadedEmbedding, ModelEmbeddings, ti_hashes_field
from studio.errors import Cancelled, InvalidRequest, OutOfMemory
from studio.fast_paths import watch_compiles
from studio.hires import HiresPass, check_hires, upscale_latents, upscale_pictures
from studio.latent_fill import LATENT_NOTHING, latent_nothing
from studio.loading import looks_local
from studio.loras import AppliedLora, LoraLibrary, lora_hashes_field, parse_loras, strip_loras, with_loras
from studio.metadata import (
    Parameters,
    attach,
    check_image_format,
    format_parameters,
    format_value,
    parse_parameters,
)
from studio.model_hash import sha256_of, short_hash
from studio.model_manager import Job, LoadedModel, ModelManager, Task
from studio.outputs import OutputStore
from studio.preview import PreviewOptions, approximate, decode_first
from studio.prompt_encoding import PromptSwitch, prompt_arguments, switching
from studio.requests import (
    MAX_CONTROL_WEIGHT,
    RANDOM_SEED,
    CompareCell,
    CompareRequest,
    CompareResult,
    ControlNetRequest,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    Img2ImgRequest,
    InpaintRequest,
    Txt2ImgRequest,
)
from studio.schedulers import check_sampler, check_sampler_steps, check_schedule
from studio.schedules import AUTOMATIC
from studio.soft_blend import SoftBlend, StepCallback, chained, repaint_support
from studio.soft_inpainting import check_soft_inpainting
from studio.tiling import tiled
from studio.token_count import TokenCounter
from studio.vae_decode import decode_latents
from studio.validation import (
    MAX_MASK_BLUR,
    MAX_PADDING,
    MIN_SIDE,
    Limits,
    check_batch_size,
    check_choice,
    check_clip_skip,
    check_flag,
    check_fraction,
    check_guidance_scale,
    check_image,
    check_range,
    check_seed_resize,
    check_size,
    check_steps,
    check_strength,
    check_text,
    check_variation,
    resolve_seed,
)
from studio.variation import Variation, generators, starting_latents, vary_added_noise, vary_drawn_noise

CONTROLNET_RESIZE_MODES = {
    "Just resize": "Just Resize",
    "Crop and resize": "Crop and Resize",
    "Resize and fill": "Resize and Fill",
}
"""The resize modes as the sd-webui-controlnet extension names them in the metadata."""

ProgressCallback = Callable[[int, int], None]
"""Called after every denoising step with (steps done, steps in all)."""
PreviewCallback = Callable[[Image.Image], None]
"""Given a picture of the sample being denoised, every ``PreviewOptions.every`` steps."""
CompareProgress = Callable[[int, int, int, int], None]
"""Called after every denoising step of a comparison with (steps done, steps in all, cells done, cells in all)."""

VERSION_TAG = f"Diffusion Studio {__version__}"
log = logging.getLogger(__name__)


def model_name(source: str) -> str:
    """The model as the metadata names it: a Hub id as it is, a local model by its file or folder name only."""
    return Path(source).stem if looks_local(source) else source


def _validate_common(request: Any, limits: Limits) -> dict[str, Any]:
    """The fields every generation request has, checked; returns the normalised values."""
    check_sampler(request.sampler)
    steps = check_steps(request.num_inference_steps, limits)
    check_sampler_steps(request.sampler, steps)
    prompt, loras = with_loras(check_text("prompt", request.prompt), request.loras)
    subseed, subseed_strength = check_variation(request.subseed, request.subseed_strength)
    return {
        "prompt": prompt,
        "loras": loras,
        "negative_prompt": check_text("negative_prompt", request.negative_prompt),
        "num_inference_steps": steps,
        "guidance_scale": check_guidance_scale(request.guidance_scale),
        "batch_size": check_batch_size(request.batch_size, limits),
        "seed": resolve_seed(request.seed),
        "clip_skip": check_clip_skip(request.clip_skip),
        "subseed": subseed,
        "subseed_strength": subseed_strength,
        "tiling": check_flag("tiling", request.tiling),
        "scheduler": check_schedule(request.sampler, request.scheduler),
    }


def clip_skip_argument(clip_skip: int) -> dict[str, int]:
    """diffusers' ``clip_skip`` for A1111's (one less), left out at 1 so the call is the plain one."""
    return {"clip_skip": clip_skip - 1} if clip_skip > 1 else {}


def seed_resize_fields(request: Txt2ImgRequest | ControlNetRequest, limits: Limits) -> dict[str, int]:
    """ "Resize seed from", checked: only where a picture starts from the seed's noise (text to image, ControlNet).
    Image to image and inpainting add noise drawn after the picture's encoding has drawn from the same generators,
    so the seed's noise drawn afresh would not be the noise they add even at the picture's own size."""
    width, height = check_seed_resize(request.seed_resize_from_w, request.seed_resize_from_h, limits)
    return {"seed_resize_from_w": width, "seed_resize_from_h": height}


def seed_resize_of(request: GenerationRequest) -> tuple[int, int] | None:
    """The "resize seed from" size of a validated request, or None when it has none (or its task takes none)."""
    if not isinstance(request, Txt2ImgRequest | ControlNetRequest) or not request.seed_resize_from_w:
        return None
    return request.seed_resize_from_w, request.seed_resize_from_h


def variation_of(request: GenerationRequest) -> Variation | None:
    """The variation of a validated request's starting noise: image *i* towards ``subseed + i``, built around its
    seed's noise at the "resize seed from" size; None with neither."""
    resize_from = seed_resize_of(request)
    if not request.subseed_strength and resize_from is None:
        return None
    return Variation(
        subseeds=tuple(request.subseed + i for i in range(request.batch_size)),
        strength=request.subseed_strength,
        seeds=tuple(batch_seeds(request)),
        resize_from=resize_from,
    )


def batch_seeds(request: GenerationRequest) -> list[int]:
    """Each image's seed: ``seed + i``, or ``seed`` for every image when it has a variation seed (as A1111)."""
    step = 0 if request.subseed_strength else 1
    return [request.seed + i * step for i in range(request.batch_size)]


def validate_txt2img(request: Txt2ImgRequest, limits: Limits) -> Txt2ImgRequest:
    """The request checked and normalised, with a random seed (-1) replaced by the seed that will be used."""
    if not isinstance(request, Txt2ImgRequest):
        raise InvalidRequest(f"expected a Txt2ImgRequest, got {type(request).__name__}")
    width, height = check_size(request.width, request.height, limits)
    common = _validate_common(request, limits)
    validated = replace(request, width=width, height=height, **common, **seed_resize_fields(request, limits))
    if not check_flag("enable_hr (hires fix)", request.enable_hr):
        return validated
    second = hires_pass(validated, limits)
    if second.sampler != validated.sampler:
        check_schedule(second.sampler, validated.scheduler)  # the hires pass follows the first pass's schedule
    return replace(
        validated,
        hr_scale=float(request.hr_scale),
        hr_second_pass_steps=int(request.hr_second_pass_steps),
        hr_resize_x=int(request.hr_resize_x),
        hr_resize_y=int(request.hr_resize_y),
        denoising_strength=second.strength,
        hr_sampler_name="" if second.sampler == validated.sampler else second.sampler,
        hr_prompt=second.prompt or "",
        hr_negative_prompt=second.negative_prompt or "",
    )


def hires_pass(request: Txt2ImgRequest, limits: Limits) -> HiresPass:
    """The hires fix's second pass of a text to image request whose own fields are valid."""
    return check_hires(
        width=request.width,
        height=request.height,
        sampler=request.sampler,
        steps=request.num_inference_steps,
        scale=request.hr_scale,
        upscaler=request.hr_upscaler,
        second_pass_steps=request.hr_second_pass_steps,
        resize_x=request.hr_resize_x,
        resize_y=request.hr_resize_y,
        strength=request.denoising_strength,
        limits=limits,
        second_pass_sampler=request.hr_sampler_name,
        prompts=(request.prompt, request.negative_prompt),
        second_pass_prompts=(request.hr_prompt, request.hr_negative_prompt),
    )


def hires_prompts(second: HiresPass) -> dict[str, str]:
    """The pipeline's prompt arguments the hires pass has of its own (LoRA tags taken out, as from the prompt)."""
    prompts = {"prompt": second.prompt, "negative_prompt": second.negative_prompt}
    return {name: strip_loras(text) for name, text in prompts.items() if text is not None}


def hires_fields(request: Txt2ImgRequest, second: HiresPass) -> dict[str, object]:
    """The hires fix as A1111 writes it in the parameters text (the Size field stays the first pass's)."""
    fields: dict[str, object] = {"Denoising strength": second.strength}
    if request.hr_resize_x or request.hr_resize_y:
        fields["Hires resize"] = f"{second.width}x{second.height}"
    else:
        fields["Hires upscale"] = request.hr_scale
    if request.hr_second_pass_steps:
        fields["Hires steps"] = request.hr_second_pass_steps
    fields["Hires upscaler"] = second.upscaler
    if second.sampler != request.sampler:
        fields["Hires sampler"] = second.sampler
    if second.prompt is not None:
        fields["Hires prompt"] = second.prompt
    if second.negative_prompt is not None:
        fields["Hires negative prompt"] = second.negative_prompt
    return fields


def validate_img2img(request: Img2ImgRequest, limits: Limits) -> Img2ImgRequest:
    if not isinstance(request, Img2ImgRequest):
        raise InvalidRequest(f"expected an Img2ImgRequest, got {type(request).__name__}")
    common = _validate_common(request, limits)
    width, height = check_size(request.width, request.height, limits)
    return replace(
        request,
        image=images.to_rgb(check_image("image", request.image)),
        width=width,
        height=height,
        strength=check_strength(request.strength, common["num_inference_steps"]),
        resize_mode=check_choice("resize_mode", request.resize_mode, images.RESIZE_MODES),
        **common,
    )


def validate_inpaint(request: InpaintRequest, limits: Limits) -> InpaintRequest:
    """Checks, plus the mask made binary, of the image's size, inverted when asked, and not empty."""
    if not isinstance(request, InpaintRequest):
        raise InvalidRequest(f"expected an InpaintRequest, got {type(request).__name__}")
    common = _validate_common(request, limits)
    image = images.to_rgb(check_image("image", request.image))
    if not isinstance(request.mask_image, Image.Image):
        raise InvalidRequest("the mask is missing: paint over the part of the picture to change, or upload a mask")
    mask = images.mask_from_image(request.mask_image, image.size)
    if check_flag("invert_mask", request.invert_mask):
        mask = images.invert(mask)
    if images.is_empty(mask):
        raise InvalidRequest(
            "the mask is empty: paint over the part of the picture to change (or upload a mask where white "
            "means change)" + (", or turn off 'invert mask'" if request.invert_mask else "")
        )
    return replace(
        request,
        image=image,
        mask_image=mask,
        strength=check_strength(request.strength, common["num_inference_steps"]),
        mask_blur=check_range("mask_blur", request.mask_blur, 0, MAX_MASK_BLUR),
        mask_blur_y=None
        if request.mask_blur_y is None
        else check_range("mask_blur_y", request.mask_blur_y, 0, MAX_MASK_BLUR),
        masked_content=check_choice("masked_content", request.masked_content, images.MASKED_CONTENT),
        soft_inpainting=check_soft_inpainting(request.soft_inpainting),
        inpaint_only_masked=check_flag("inpaint_only_masked", request.inpaint_only_masked),
        padding=check_range("padding", request.padding, 0, MAX_PADDING),
        invert_mask=False,  # already applied to mask_image
        **common,
    )


def validate_controlnet(request: ControlNetRequest, limits: Limits) -> ControlNetRequest:
    """Checks, with the thresholds put in order and the size resolved (the control image's, unless given)."""
    if not isinstance(request, ControlNetRequest):
        raise InvalidRequest(f"expected a ControlNetRequest, got {type(request).__name__}")
    common = {**_validate_common(request, limits), **seed_resize_fields(request, limits)}
    image = images.to_rgb(check_image("image", request.image))
    if request.width is None and request.height is None:
        if min(image.size) < MIN_SIDE:
            raise InvalidRequest(
                f"the control image is {image.width}x{image.height}; ControlNet needs at least {MIN_SIDE}x{MIN_SIDE}: "
                "upload a larger picture, or set width and height"
            )
        width, height = images.fit_within(image.width, image.height, limits.max_pixels)
    else:
        width, height = check_size(request.width, request.height, limits)
    low = check_range("low_threshold", request.low_threshold, 1, 255)
    high = check_range("high_threshold", request.high_threshold, 1, 255)
    start = check_fraction("guidance_start", request.control_guidance_start)
    end = check_fraction("guidance_end", request.control_guidance_end)
    if start >= end:
        raise InvalidRequest(f"guidance_start ({start:g}) must be below guidance_end ({end:g})")
    return replace(
        request,
        image=image,
        preprocessor=check_choice("preprocessor", request.preprocessor, images.PREPROCESSORS),
        low_threshold=min(low, high),
        high_threshold=max(low, high),
        controlnet_conditioning_scale=check_fraction(
            "conditioning_scale (control weight)", request.controlnet_conditioning_scale, MAX_CONTROL_WEIGHT
        ),
        control_guidance_start=start,
        control_guidance_end=end,
        width=width,
        height=height,
        resize_mode=check_choice("resize_mode", request.resize_mode, images.RESIZE_MODES),
        **common,
    )


def validate_compare(request: CompareRequest, limits: Limits) -> CompareRequest:
    """Checks of the shared settings and of each axis value (as the single-image tasks check them, every
    combination of the two axes included), and the number of cells against ``--max-cells``."""
    if not isinstance(request, CompareRequest):
        raise InvalidRequest(f"expected a CompareRequest, got {type(request).__name__}")
    prompts = tuple(check_text("prompt", prompt) for prompt in request.prompts)
    for prompt in prompts:
        parse_loras(prompt)  # a malformed <lora:...> tag is refused before any cell runs
    if not 1 <= len(prompts) <= compare.MAX_PROMPTS:
        raise InvalidRequest(f"compare 1 to {compare.MAX_PROMPTS} prompts, one per line; got {len(prompts)}")
    axis = check_choice("axis", request.axis, compare.AXES)
    column_axis = check_choice("column_axis", request.column_axis, compare.AXES)
    _check_compare_layout(request, prompts, axis, column_axis, limits)
    check_sampler(request.sampler)
    steps = check_steps(request.num_inference_steps, limits)
    width, height = check_size(request.width, request.height, limits)
    image = None
    strength = request.strength
    if request.image is not None:
        image = images.to_rgb(check_image("image", request.image))
        strength = check_strength(request.strength, steps)
    elif "Strength" in (axis, column_axis):
        raise InvalidRequest("the Strength axis compares image to image: add a source image")
    subseed, subseed_strength = check_variation(request.subseed, request.subseed_strength)
    if "Var. seed" in (axis, column_axis) and not subseed_strength and "Var. strength" not in (axis, column_axis):
        raise InvalidRequest("the Var. seed axis compares variation seeds: set a variation strength above 0")
    if "Var. strength" in (axis, column_axis) and subseed == RANDOM_SEED:
        subseed = resolve_seed(subseed)  # one random variation seed shared by every cell
    checks = {
        "Sampler": lambda v: check_sampler(v).name,
        "Steps": lambda v: check_steps(v, limits),
        "CFG scale": check_guidance_scale,
        "Seed": resolve_seed,
        "Strength": lambda v: check_fraction("Strength", v),
        "Var. seed": lambda v: resolve_seed(v, "Var. seed"),
        "Var. strength": lambda v: check_fraction("Var. strength", v),
    }
    values = tuple(checks[axis](value) for value in request.axis_values) if axis != compare.NO_AXIS else ()
    columns = tuple(checks[column_axis](v) for v in request.column_values) if column_axis != compare.NO_AXIS else ()
    swept = {axis: values, column_axis: columns}
    for cell_steps in swept.get("Steps") or (steps,):
        if image is not None:
            for cell_strength in swept.get("Strength") or (strength,):
                check_strength(cell_strength, int(cell_steps))
        for sampler in swept.get("Sampler") or (request.sampler,):
            check_sampler_steps(str(sampler), int(cell_steps))
    return replace(
        request,
        prompts=prompts,
        negative_prompt=check_text("negative_prompt", request.negative_prompt),
        num_inference_steps=steps,
        guidance_scale=check_guidance_scale(request.guidance_scale),
        width=width,
        height=height,
        seed=resolve_seed(request.seed),
        axis=axis,
        axis_values=values,
        column_axis=column_axis,
        column_values=columns,
        image=image,
        strength=strength,
        clip_skip=check_clip_skip(request.clip_skip),
        subseed=subseed,
        subseed_strength=subseed_strength,
        tiling=check_flag("tiling", request.tiling),
    )


def _check_compare_layout(
    request: CompareRequest, prompts: tuple[str, ...], axis: str, column_axis: str, limits: Limits
) -> None:
    """The grid a comparison asks for: prompts (or a column axis's values) across, an axis's values down, and
    no more cells than ``--max-cells``."""
    if axis != compare.NO_AXIS and not request.axis_values:
        raise InvalidRequest(f"enter the {axis} values to compare, separated by commas")
    rows = max(1, len(request.axis_values)) if axis != compare.NO_AXIS else 1
    if column_axis == compare.NO_AXIS:
        if len(prompts) == 1 and not request.axis_values:
            raise InvalidRequest("enter 2 or more prompts (one per line), or choose an axis and values to compare")
        cells, shape = len(prompts) * rows, f"{len(prompts)} prompts x {rows} values"
    else:
        if not request.column_values:
            raise InvalidRequest(f"enter the {column_axis} values of the columns, separated by commas")
        if len(prompts) > 1:
            raise InvalidRequest(
                f"with a column axis, compare one prompt: the columns are the {column_axis} values "
                f"(or leave the column axis at None to put the prompts across)"
            )
        if column_axis == axis:
            raise InvalidRequest(f"the rows and the columns both sweep {axis}: choose two different axes")
        cells, shape = len(request.column_values) * rows, f"{len(request.column_values)} columns x {rows} rows"
    if cells > limits.max_cells:
        raise InvalidRequest(
            f"{cells} cells ({shape}); this studio makes at most {limits.max_cells} per comparison (--max-cells). "
            "Compare fewer."
        )


def _step_callback(
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    preview: PreviewCallback | None = None,
    options: PreviewOptions | None = None,
    size: tuple[int, int] = (512, 512),
    before: int = 0,
    after: int = 0,
) -> Callable[[DiffusionPipeline, int, Any, dict[str, Any]], dict[str, Any]]:
    """diffusers' ``callback_on_step_end``: report the step, show a preview every few steps, and interrupt when
    Stop was pressed. Previews only read the latents, so the result is the same with or without them. Progress
    counts ``before`` steps already done and ``after`` steps still to come in other passes of the same job."""
    every = options.every if (preview is not None and options is not None) else 0

    def on_step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        done, total = step + 1, pipe.num_timesteps
        if progress is not None:
            progress(before + done, before + total + after)
        if every and done % every == 0 and done < total and preview is not None and options is not None:
            latents = tensors["latents"]
            if options.mode == "vae" or latents.shape[1] != 4:
                preview(decode_first(pipe.vae, latents))
            else:
                preview(approximate(latents, isinstance(pipe, StableDiffusionXLPipeline), size))
        if cancel is not None and cancel.is_set():
            pipe._interrupt = True
        return tensors

    return on_step_end


def _unchanged(image: Image.Image) -> Image.Image:
    return image


def _stop_if_asked(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Stopped: the generation was interrupted and nothing was kept.")


@dataclass(frozen=True)
class _Plan:
    """A validated request as one pipeline call: its arguments, the finishing of each image, and the extra
    A1111 fields the metadata records."""

    task: Task
    request: GenerationRequest
    arguments: Mapping[str, Any]
    size: tuple[int, int]
    finish: Callable[[Image.Image], Image.Image] = _unchanged
    fields: Mapping[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    control_image: Image.Image | None = None
    loras: tuple[AppliedLora, ...] = ()
    hires: HiresPass | None = None
    embeddings: tuple[LoadedEmbedding, ...] = ()
    """The textual inversions its prompts named (for ``TI hashes``), known once the model that served is."""
    prepare: Callable[[DiffusionPipeline, Mapping[str, Any]], Mapping[str, Any]] | None = None
    """Arguments that need the job's own pipeline (latents its VAE encodes), made from the call's arguments
    inside the job and added to them."""
    blend: StepCallback | None = None
    """What each denoising step does to the sample before the rest (soft inpainting's blend), if anything."""


class StudioService:
    """Generation for every tab and API, over one model manager."""

    def __init__(
        self,
        manager: ModelManager,
        limits: Limits,
        outputs: OutputStore,
        previews: PreviewOptions | None = None,
        loras: LoraLibrary | None = None,
    ) -> None:
        self.manager = manager
        self.limits = limits
        self.outputs = outputs
        self.previews = previews or PreviewOptions()
        self.loras = loras or LoraLibrary(None)
        self.tokens = TokenCounter(manager)

    def txt2img(
        self,
        request: Txt2ImgRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> GenerationResult:
        """Generate ``request.batch_size`` images; image *i* uses seed ``seed + i`` and its own CPU generator,
        so any image of a batch can be made again alone, at any batch size, on any device."""
        request = validate_txt2img(request, self.limits)
        second = hires_pass(request, self.limits) if request.enable_hr else None
        plan = _Plan(
            task=Task.TXT2IMG,
            request=request,
            arguments={"width": request.width, "height": request.height},
            size=(request.width, request.height),
            fields=hires_fields(request, second) if second else {},
            hires=second,
        )
        return self._run(plan, progress, cancel, preview, image_format)

    def img2img(
        self,
        request: Img2ImgRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> GenerationResult:
        """Redraw ``request.image`` at ``strength``, resized to the requested size by the requested mode."""
        request = validate_img2img(request, self.limits)
        init = images.resize_image(request.image, request.width, request.height, request.resize_mode)
        plan = _Plan(
            task=Task.IMG2IMG,
            request=request,
            arguments={"image": init, "strength": request.strength},
            size=(request.width, request.height),
            fields={"Denoising strength": request.strength},
        )
        return self._run(plan, progress, cancel, preview, image_format)

    def inpaint(
        self,
        request: InpaintRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> GenerationResult:
        """Repaint the masked part of ``request.image``; every pixel outside the (blurred) mask is returned as it
        was. Results have the size of the input image."""
        request = validate_inpaint(request, self.limits)
        image, mask = request.image, request.mask_image
        notes: list[str] = []
        if request.inpaint_only_masked:
            padded = images.padded_box(mask, request.padding)
            size = images.scale_to_area(padded.size, self.manager.native_resolution(), self.limits.max_pixels)
            box = images.expand_to_aspect(padded, size[0] / size[1], image.size)
        else:
            box = images.Box(0, 0, *image.size)
            size = images.fit_within(image.width, image.height, self.limits.max_pixels)
            if size != image.size:
                notes.append(f"The picture was inpainted at {size[0]}x{size[1]} (multiples of 8, --max-pixels).")
        region, region_mask = image.crop(box.as_tuple()), mask.crop(box.as_tuple())
        if request.masked_content == "fill":
            region = images.fill_masked(region, region_mask)
        elif request.masked_content == "latent noise":
            region = images.noise_masked(region, region_mask, request.seed)
        soft_mask = images.blur(mask, request.mask_blur, request.mask_blur_y)

        def paste_back(generated: Image.Image) -> Image.Image:
            pasted = image.copy()
            pasted.paste(generated.resize(box.size, Image.LANCZOS), (box.left, box.top))
            return images.composite(image, pasted, soft_mask)

        fields: dict[str, object] = {"Denoising strength": request.strength, "Mask blur": request.mask_blur}
        if request.mask_blur_y not in (None, request.mask_blur):
            fields = {"Denoising strength": request.strength, "Mask blur X": request.mask_blur}
            fields["Mask blur Y"] = request.mask_blur_y
        if request.inpaint_only_masked:
            fields.update({"Inpaint area": "Only masked", "Masked area padding": request.padding})
        fields["Masked content"] = request.masked_content
        start = region.resize(size, Image.LANCZOS)
        region_soft_mask = soft_mask.crop(box.as_tuple()).resize(size, Image.LANCZOS)
        blend = None
        if request.soft_inpainting is not None:
            fields.update(request.soft_inpainting.fields())
            blend = SoftBlend(request.soft_inpainting, start, region_soft_mask, batch_seeds(request))
            region_soft_mask = repaint_support(region_soft_mask)
        plan = _Plan(
            task=Task.INPAINT,
            request=request,
            arguments={
                "image": start,
                "mask_image": region_soft_mask,
                "strength": request.strength,
                "width": size[0],
                "height": size[1],
            },
            size=image.size,
            finish=paste_back,
            fields=fields,
            notes=tuple(notes),
            prepare=latent_nothing if request.masked_content == LATENT_NOTHING else None,
            blend=blend,
        )
        return self._run(plan, progress, cancel, preview, image_format)

    def controlnet(
        self,
        request: ControlNetRequest,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> GenerationResult:
        """Text to image that follows the Canny edges of ``request.image``; the edge map comes with the result."""
        swapped = isinstance(request.low_threshold, int | float) and isinstance(request.high_threshold, int | float)
        swapped = swapped and request.low_threshold > request.high_threshold
        request = validate_controlnet(request, self.limits)
        assert request.width is not None and request.height is not None
        source = images.resize_image(request.image, request.width, request.height, request.resize_mode)
        if request.preprocessor == "canny":
            control = images.canny(source, request.low_threshold, request.high_threshold)
        else:
            control = images.as_edge_map(source)
        notes = []
        if swapped:
            notes.append("The low threshold was above the high one; they were used the other way round.")
        if images.is_empty(control.convert("L")):
            notes.append(
                "The edge map is empty (no edges at these thresholds), so the ControlNet had nothing to follow; "
                "lower the thresholds."
            )
        controlnet = model_name(self.manager.controlnet_for(self.manager.current()))
        unit = {
            "Module": request.preprocessor,
            "Model": controlnet,
            "Weight": request.controlnet_conditioning_scale,
            "Resize Mode": CONTROLNET_RESIZE_MODES[request.resize_mode],
            "Threshold A": request.low_threshold,
            "Threshold B": request.high_threshold,
            "Guidance Start": request.control_guidance_start,
            "Guidance End": request.control_guidance_end,
        }
        plan = _Plan(
            task=Task.CONTROLNET,
            request=request,
            arguments={
                "image": control,
                "controlnet_conditioning_scale": request.controlnet_conditioning_scale,
                "control_guidance_start": request.control_guidance_start,
                "control_guidance_end": request.control_guidance_end,
                "width": request.width,
                "height": request.height,
            },
            size=(request.width, request.height),
            # As the sd-webui-controlnet extension writes it: one quoted "Key: value, ..." field per unit.
            fields={"ControlNet 0": ", ".join(f"{key}: {format_value(value)}" for key, value in unit.items())},
            notes=tuple(notes),
            control_image=control,
        )
        return self._run(plan, progress, cancel, preview, image_format)

    def compare(
        self,
        request: CompareRequest,
        *,
        progress: CompareProgress | None = None,
        cancel: threading.Event | None = None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> CompareResult:
        """Every prompt crossed with every axis value, all else equal (the seed too), so differences come from
        the prompt or the value alone. Cells that share their settings run as one batched pipeline call, each
        with its own generator, so a cell matches what txt2img (or img2img) makes for the same settings. The
        cells and the grid are saved as ``image_format`` (by default ``--save-format``)."""
        request = validate_compare(request, self.limits)
        image_format = self.check_image_format(image_format)
        values: tuple[compare.AxisValue | None, ...] = request.axis_values or (None,)
        columns: list[tuple[str, compare.AxisValue | None]] = (
            [(request.prompts[0], column) for column in request.column_values]
            if request.column_values
            else [(prompt, None) for prompt in request.prompts]
        )
        cells = [(value, prompt, column) for value in values for prompt, column in columns]
        requests = [self._cell_request(request, prompt, value, column) for value, prompt, column in cells]
        # Every LoRA named anywhere is found (or refused) before the first cell runs.
        applied = {cell.loras: self.loras.resolve(cell.loras) for cell in requests}
        # Cells with the same settings (all but prompt and seed; the same LoRAs) share one pipeline call, up to
        # --max-batch.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, cell in enumerate(requests):
            key = (
                cell.sampler,
                cell.num_inference_steps,
                cell.guidance_scale,
                getattr(cell, "strength", None),
                cell.subseed_strength,
                cell.tiling,
                cell.loras,
            )
            groups.setdefault(key, []).append(index)
        chunks = [
            indices[start : start + self.limits.max_batch]
            for indices in groups.values()
            for start in range(0, len(indices), self.limits.max_batch)
        ]
        steps_of = [self._steps_run(requests[chunk[0]]) for chunk in chunks]
        total_steps, done_steps, done_cells = sum(steps_of), 0, 0
        images_of: dict[int, Image.Image] = {}
        all_notes: list[str] = []
        served: ModelEmbeddings = ModelEmbeddings()
        model = ""
        for chunk, steps in zip(chunks, steps_of, strict=True):

            def report(done: int, _total: int, before: int = done_steps, cells_done: int = done_cells) -> None:
                if progress is not None:
                    progress(before + done, total_steps, cells_done, len(requests))

            first = requests[chunk[0]]
            arguments: dict[str, Any] = {
                "prompt": [strip_loras(requests[i].prompt) for i in chunk],
                "negative_prompt": [first.negative_prompt] * len(chunk) if first.negative_prompt else None,
                "num_inference_steps": first.num_inference_steps,
                "guidance_scale": first.guidance_scale,
                "num_images_per_prompt": 1,
                **clip_skip_argument(first.clip_skip),
            }
            if isinstance(first, Img2ImgRequest):
                init = images.resize_image(first.image, first.width, first.height, first.resize_mode)
                arguments.update(image=[init] * len(chunk), strength=first.strength)
                task = Task.IMG2IMG
            else:
                arguments.update(width=first.width, height=first.height)
                task = Task.TXT2IMG
            seeds = [requests[i].seed for i in chunk]
            variation = None
            if first.subseed_strength:
                variation = Variation(tuple(requests[i].subseed for i in chunk), first.subseed_strength)
            decoded, notes, loaded = self._denoise(
                task,
                first.sampler,
                seeds,
                arguments,
                report,
                cancel,
                preview,
                (first.width, first.height),
                applied[first.loras],
                variation=variation,
                tiling=first.tiling,
            )
            model, served = model_name(loaded.source), loaded.embeddings
            model_hash = short_hash(sha256_of(loaded.source))
            all_notes.extend(note for note in notes if note not in all_notes)
            images_of.update(zip(chunk, decoded, strict=True))
            done_steps += steps
            done_cells += len(chunk)
            if progress is not None:
                progress(done_steps, total_steps, done_cells, len(requests))
        results = []
        for index, ((value, prompt, column), cell) in enumerate(zip(cells, requests, strict=True)):
            named = tuple(served.used_in(cell.prompt, cell.negative_prompt))
            plan = replace(self._cell_plan(cell), loras=applied[cell.loras], embeddings=named)
            generated = self._finish(
                plan,
                [images_of[index]],
                [cell.seed],
                model,
                [],
                folder="compare",
                image_format=image_format,
                model_hash=model_hash,
            ).images[0]
            results.append(CompareCell(prompt=prompt, axis_value=value, image=generated, column_value=column))
        grid = self._grid(request, results, model, image_format)
        diff = tuple(tuple(words) for words in compare.differing_words(request.prompts))
        return CompareResult(request, tuple(results), grid, diff, model, tuple(all_notes))

    def _cell_request(
        self,
        request: CompareRequest,
        prompt: str,
        value: compare.AxisValue | None,
        column: compare.AxisValue | None = None,
    ) -> Txt2ImgRequest | Img2ImgRequest:
        """What txt2img (or img2img) would be asked for one cell: the shared settings with the axes' values set."""
        axis_field = {
            "Sampler": "sampler",
            "Steps": "num_inference_steps",
            "CFG scale": "guidance_scale",
            "Seed": "seed",
            "Strength": "strength",
            "Var. seed": "subseed",
            "Var. strength": "subseed_strength",
        }
        shared: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": request.negative_prompt,
            "sampler": request.sampler,
            "num_inference_steps": request.num_inference_steps,
            "guidance_scale": request.guidance_scale,
            "width": request.width,
            "height": request.height,
            "seed": request.seed,
            "loras": parse_loras(prompt),
            "clip_skip": request.clip_skip,
            "subseed": request.subseed,
            "subseed_strength": request.subseed_strength,
            "tiling": request.tiling,
        }
        if request.image is not None:
            shared.update(image=request.image, strength=request.strength, resize_mode="Crop and resize")
        if value is not None:
            shared[axis_field[request.axis]] = value
        if column is not None:
            shared[axis_field[request.column_axis]] = column
        if request.image is not None:
            return Img2ImgRequest(**shared)
        return Txt2ImgRequest(**shared)

    @staticmethod
    def _steps_run(cell: Txt2ImgRequest | Img2ImgRequest) -> int:
        """Denoising steps a cell really runs: img2img skips the first (1 - strength) of the schedule."""
        if isinstance(cell, Img2ImgRequest):
            return int(cell.num_inference_steps * cell.strength)
        return cell.num_inference_steps

    @staticmethod
    def _cell_plan(cell: Txt2ImgRequest | Img2ImgRequest) -> _Plan:
        if isinstance(cell, Img2ImgRequest):
            return _Plan(
                Task.IMG2IMG, cell, {}, (cell.width, cell.height), fields={"Denoising strength": cell.strength}
            )
        return _Plan(Task.TXT2IMG, cell, {}, (cell.width, cell.height))

    def _grid(
        self, request: CompareRequest, cells: Sequence[CompareCell], model: str, image_format: str
    ) -> GeneratedImage:
        """The labelled grid (prompts or the column axis's values across, axis values down), saved beside the first
        cell, with metadata that names the axes."""
        columns = len(request.column_values) or len(request.prompts)
        rows = [
            [cell.image.image for cell in cells[start : start + columns]] for start in range(0, len(cells), columns)
        ]
        row_labels = [compare.format_axis_value(request.axis, value) for value in request.axis_values]
        column_labels = [compare.format_axis_value(request.column_axis, value) for value in request.column_values]
        grid = compare.draw_grid(rows, compare.GridLabels(columns=column_labels or request.prompts, rows=row_labels))
        first = cells[0].image
        axes = {"Compare prompts": " | ".join(request.prompts)}
        if request.axis_values:
            axes["Compare axis"] = f"{request.axis}: " + ", ".join(str(v) for v in request.axis_values)
        if request.column_values:
            axes["Compare columns"] = f"{request.column_axis}: " + ", ".join(str(v) for v in request.column_values)
        parsed = parse_parameters(first.parameters)
        parameters = format_parameters(
            Parameters(prompt=parsed.prompt, negative_prompt=parsed.negative_prompt, fields={**parsed.fields, **axes})
        )
        record = {"request": request.to_record(), "model": model, "version": VERSION_TAG}
        attach(grid, parameters, record)
        path = self.outputs.save_beside(first.path, grid, "grid", parameters, record, image_format)
        return GeneratedImage(image=grid, seed=first.seed, parameters=parameters, path=path, image_format=image_format)

    def _denoise(
        self,
        task: Task,
        sampler: str,
        seeds: Sequence[int],
        arguments: Mapping[str, Any],
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        preview: PreviewCallback | None = None,
        size: tuple[int, int] = (512, 512),
        loras: Sequence[AppliedLora] = (),
        hires: HiresPass | None = None,
        variation: Variation | None = None,
        tiling: bool = False,
        prepare: Callable[[DiffusionPipeline, Mapping[str, Any]], Mapping[str, Any]] | None = None,
        schedule: str = AUTOMATIC,
        blend: StepCallback | None = None,
    ) -> tuple[list[Image.Image], list[str], LoadedModel]:
        """One pipeline call on the GPU: one CPU generator per image, latents out, decoded here (with the float32
        retry); with ``hires``, the hires fix's second pass in the same job. ``loras`` apply to this call only;
        ``variation`` varies the starting noise of both passes; ``tiling`` makes the job's convolutions wrap around;
        ``schedule`` is A1111's schedule type of both passes; ``blend`` runs first after every step of the first pass.
        Returns the pictures, notes for the user, and the model that made them."""
        try:
            with (
                self.manager.job(task, sampler, seeds, loras, schedule) as job,
                watch_compiles() as compiles,
                tiled(job.pipeline, tiling),
            ):
                after = hires.steps_run if hires is not None else 0
                call, switch = prompt_arguments(job.pipeline, arguments)
                if prepare is not None:
                    call = {**call, **prepare(job.pipeline, call)}
                seed_generators = generators(seeds)
                if variation is not None:
                    call = {**call, **self._varied(task, job.pipeline, seed_generators, variation, call)}
                on_step = _step_callback(progress, cancel, preview, self.previews, size, after=after)
                output = job.pipeline(
                    generator=seed_generators,
                    output_type="latent",
                    callback_on_step_end=switching(on_step if blend is None else chained(blend, on_step), switch),
                    **call,
                )
                _stop_if_asked(cancel)
                latents, notes = output.images, []
                if hires is not None:
                    # The first pass's embeddings serve again unless the second pass's texts are its own or
                    # change over its own steps.
                    own = hires_prompts(hires)
                    second_call, second_switch = call, None
                    if own or switch is not None:
                        second = {**arguments, **own, "num_inference_steps": hires.steps, "strength": hires.strength}
                        second_call, second_switch = prompt_arguments(job.pipeline, second)
                    latents, notes = self._hires_pass(
                        job,
                        hires,
                        latents,
                        seeds,
                        second_call,
                        progress,
                        cancel,
                        preview,
                        variation,
                        second_switch,
                        schedule,
                    )
                decoded, more = decode_latents(
                    job.pipeline.vae, job.pipeline.image_processor, latents, upcast=job.model.upcasts_vae
                )
                notes = list(dict.fromkeys([*notes, *more]))
        except torch.OutOfMemoryError:
            # The GPU lock is released already; drop what the failed job held before anyone else runs.
            self.manager.free_memory()
            size = f"{arguments['width']}x{arguments['height']}" if "width" in arguments else "this size"
            if hires is not None:
                size += f" upscaled to {hires.width}x{hires.height}"
            raise OutOfMemory(
                f"Out of memory on {self.manager.placement.device.type} making {len(seeds)} image(s) at {size}. "
                "The memory was freed: lower the size or the batch size and try again."
            ) from None
        if compiles.new_graphs and self.manager.speed.compile:
            shape = f"{arguments['width']}x{arguments['height']}" if "width" in arguments else "this size"
            log.info(
                "torch.compile: %d new graphs for %s, batch %d (%.1f s)",
                compiles.new_graphs,
                shape,
                len(seeds),
                compiles.seconds,
            )
            notes.append(
                f"The first run at {shape} with {len(seeds)} image(s) compiled the model for that shape "
                f"(--compile; {compiles.seconds:.0f} s in all); the next runs at that shape start at once."
            )
        return decoded, notes, job.model

    def _hires_pass(
        self,
        job: Job,
        hires: HiresPass,
        latents: torch.Tensor,
        seeds: Sequence[int],
        arguments: Mapping[str, Any],
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        preview: PreviewCallback | None,
        variation: Variation | None = None,
        switch: PromptSwitch | None = None,
        schedule: str = AUTOMATIC,
    ) -> tuple[torch.Tensor, list[str]]:
        """The hires fix's second pass, inside the first pass's job: upscale what it made (the latents, or the
        decoded pictures), then image to image on the same modules at ``hires.strength``, each image with a
        generator of its own seed again (as A1111 seeds its second pass) and the same ``variation`` of its noise.
        Returns the latents and notes."""
        first = job.pipeline
        size = (hires.width, hires.height)
        notes: list[str] = []
        if hires.in_latent_space:
            start: torch.Tensor | list[Image.Image] = upscale_latents(
                latents, size, hires.upscaler, first.vae_scale_factor
            )
        else:
            pictures, notes = decode_latents(first.vae, first.image_processor, latents, upcast=job.model.upcasts_vae)
            start = upscale_pictures(pictures, size, hires.upscaler)
        pipe = self.manager.image_to_image_of(job, hires.sampler, seeds, schedule)
        if variation is not None:
            vary_added_noise(pipe.scheduler, variation, pipe.vae_scale_factor)
        dropped = ("width", "height", "latents", "strength")
        second = {key: value for key, value in arguments.items() if key not in dropped}
        second["num_inference_steps"] = hires.steps
        output = pipe(
            image=start,
            strength=hires.strength,
            generator=generators(seeds),
            output_type="latent",
            callback_on_step_end=switching(
                _step_callback(progress, cancel, preview, self.previews, size, before=first.num_timesteps), switch
            ),
            **second,
        )
        _stop_if_asked(cancel)
        return output.images, notes

    @staticmethod
    def _varied(
        task: Task,
        pipe: DiffusionPipeline,
        seed_generators: Sequence[torch.Generator],
        variation: Variation,
        arguments: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Vary a job's starting noise where its pipeline draws it (``studio/variation.py``): returns ``latents``
        for text to image and ControlNet; otherwise the job's pipeline or scheduler is made to vary it."""
        if "strength" not in arguments:
            width, height = arguments["width"], arguments["height"]
            return {"latents": starting_latents(pipe, seed_generators, variation, width, height)}
        if task is Task.INPAINT and arguments["strength"] >= 1:
            vary_drawn_noise(pipe, variation)
        else:
            vary_added_noise(pipe.scheduler, variation, pipe.vae_scale_factor)
        return {}

    def check_image_format(self, image_format: str | None) -> str:
        """The format to save in: ``image_format`` (png, jpeg, webp), or ``--save-format`` when None."""
        try:
            return check_image_format(image_format or self.outputs.image_format)
        except ValueError as error:
            raise InvalidRequest(str(error)) from None

    def _run(
        self,
        plan: _Plan,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        preview: PreviewCallback | None = None,
        image_format: str | None = None,
    ) -> GenerationResult:
        request = plan.request
        image_format = self.check_image_format(image_format)
        plan = replace(plan, loras=self.loras.resolve(request.loras))
        variation = variation_of(request)
        seeds = batch_seeds(request)
        arguments = {
            "prompt": strip_loras(request.prompt),
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": request.num_inference_steps,
            "guidance_scale": request.guidance_scale,
            "num_images_per_prompt": request.batch_size,
            **clip_skip_argument(request.clip_skip),
            **plan.arguments,
        }
        decoded, notes, served = self._denoise(
            plan.task,
            request.sampler,
            seeds,
            arguments,
            progress,
            cancel,
            preview,
            plan.size,
            plan.loras,
            plan.hires,
            variation,
            request.tiling,
            prepare=plan.prepare,
            schedule=request.scheduler,
            blend=plan.blend,
        )
        model = model_name(served.source)
        prompts = [request.prompt, request.negative_prompt]
        if plan.hires is not None:
            prompts += [text for text in (plan.hires.prompt, plan.hires.negative_prompt) if text is not None]
        plan = replace(plan, embeddings=tuple(served.embeddings.used_in(*prompts)))
        finished = [plan.finish(image) for image in decoded]
        model_hash = short_hash(sha256_of(served.source))
        return self._finish(
            plan, finished, seeds, model, [*plan.notes, *notes], image_format=image_format, model_hash=model_hash
        )

    def _finish(
        self,
        plan: _Plan,
        finished: Sequence[Image.Image],
        seeds: Sequence[int],
        model: str,
        notes: Sequence[str],
        folder: str | None = None,
        image_format: str | None = None,
        model_hash: str | None = None,
    ) -> GenerationResult:
        """Attach metadata to each image and save it (under ``folder``, by default the request's task) as
        ``image_format`` (by default ``--save-format``). ``model_hash`` is A1111's ``Model hash``
        (studio/model_hash.py), which lets civitai and PNG readers find the model."""
        request = plan.request
        image_format = image_format or self.outputs.image_format
        items = []
        variation, resize_from = variation_of(request), seed_resize_of(request)
        for index, (image, seed) in enumerate(zip(finished, seeds, strict=True)):
            subseed = variation.subseeds[index] if variation is not None and variation.strength else None
            parameters = format_parameters(
                Parameters(
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt,
                    fields={
                        "Steps": request.num_inference_steps,
                        "Sampler": request.sampler,
                        **({"Schedule type": request.scheduler} if request.scheduler != AUTOMATIC else {}),
                        "CFG scale": request.guidance_scale,
                        "Seed": seed,
                        "Size": f"{plan.size[0]}x{plan.size[1]}",
                        **({"Model hash": model_hash} if model_hash else {}),
                        "Model": model,
                        **(
                            {"Variation seed": subseed, "Variation seed strength": request.subseed_strength}
                            if subseed is not None
                            else {}
                        ),
                        **({"Seed resize from": "{}x{}".format(*resize_from)} if resize_from else {}),
                        **({"Tiling": True} if request.tiling else {}),
                        **plan.fields,
                        **({"Clip skip": request.clip_skip} if request.clip_skip > 1 else {}),
                        **({"Lora hashes": lora_hashes_field(plan.loras)} if plan.loras else {}),
                        **({"TI hashes": ti_hashes_field(plan.embeddings)} if plan.embeddings else {}),
                        "Version": VERSION_TAG,
                    },
                )
            )
            record = {
                "request": request.to_record(),
                "seed": seed,
                "batch_index": index,
                **({"subseed": subseed} if subseed is not None else {}),
                "model": model,
                "version": VERSION_TAG,
            }
            attach(image, parameters, record)
            path = self.outputs.save(image, folder or request.task, seed, parameters, record, image_format)
            items.append(
                GeneratedImage(
                    image=image,
                    seed=seed,
                    parameters=parameters,
                    path=path,
                    image_format=image_format,
                    subseed=subseed,
                )
            )
        control = None
        if plan.control_image is not None:
            first = items[0]
            attach(plan.control_image, first.parameters, {"control_image_of": first.seed, "model": model})
            path = self.outputs.save_beside(
                first.path, plan.control_image, str(request.preprocessor), first.parameters, {}
            )
            control = GeneratedImage(image=plan.control_image, seed=first.seed, parameters=first.parameters, path=path)
        return GenerationResult(
            request=request, images=tuple(items), model=model, notes=tuple(notes), control_image=control
        )
