"""A1111 request bodies -> the studio's request dataclasses (one per batch), and what A1111 asks that the studio
refuses rather than silently ignores.

Fields that only tune features the studio lacks and that change nothing when left at their defaults are
ignored (as A1111 ignores unknown ones). A field that asks for such a feature (``restore_faces``, a script, a
sampler or prompt of its own for the hires pass) is refused with a message, so a client never gets a different
picture than it asked for without being told.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from studio.api.controlnet import controlnet_unit
from studio.api.images import decode_image
from studio.api.samplers import sampler_for
from studio.api.schemas import GenerationBody, Img2ImgBody, Txt2ImgBody
from studio.batches import check_batch_count, nth_batch
from studio.errors import InvalidRequest
from studio.images import RESIZE_MODES, mask_from_image, resize_image, to_rgb
from studio.requests import (
    DEFAULT_HR_STRENGTH,
    DEFAULT_HR_UPSCALER,
    ControlNetRequest,
    GenerationRequest,
    Img2ImgRequest,
    InpaintRequest,
    Txt2ImgRequest,
)
from studio.soft_inpainting import SCRIPT_NAME, SoftInpainting, from_script_args
from studio.styles import StyleLibrary
from studio.validation import Limits, check_size, check_variation, resolve_seed

INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
"""A1111's ``inpainting_fill`` numbers -> the studio's masked content."""

SAME_VAE = (None, "", "Automatic", "None")
"""``override_settings.sd_vae`` values that keep the model's own VAE (the studio has no other)."""


def create_task_id(task: str) -> str:
    """A job id in A1111's shape, ``task(txt2img-1a2b3c4d5e6f7a8)``, for a request without ``force_task_id``."""
    return f"task({task}-{secrets.token_hex(8)[:15]})"


@dataclass(frozen=True)
class ServerFacts:
    """What the mapping needs to know of the server: its limits, the image size it accepts, its ControlNet and
    its prompt styles."""

    limits: Limits
    max_upload_megapixels: int
    controlnet_name: str
    styles: StyleLibrary = field(default_factory=lambda: StyleLibrary(None))


@dataclass(frozen=True)
class A1111Job:
    """One A1111 request as the studio runs it: ``n_iter`` batches of ``request`` (their seeds as
    ``studio/batches.py`` counts them), with the model it asked for and what to do with the images."""

    task: str
    request: GenerationRequest
    n_iter: int
    checkpoint: str | None
    restore_checkpoint: bool
    send_images: bool
    save_images: bool
    task_id: str = ""

    def batch(self, index: int) -> GenerationRequest:
        return nth_batch(self.request, index)


def _off(value: object, *defaults: object) -> bool:
    return value is None or value in defaults


def _refuse_unsupported(body: GenerationBody, sampler: str) -> None:
    """Refuse every A1111 field that would change the picture in a way the studio cannot, naming it (the fields
    that change no pixels are listed in the README's A1111 section)."""
    asked = {
        "restore_faces": bool(body.restore_faces),
        f"script_name {body.script_name!r}": bool(body.script_name),
        "infotext": bool(body.infotext),
        "s_min_uncond": not _off(body.s_min_uncond, 0),
        "s_churn": not _off(body.s_churn, 0),
        "refiner_checkpoint": bool(body.refiner_checkpoint) and body.refiner_checkpoint != "None",
        "disable_extra_networks": body.disable_extra_networks,
    }
    noisy = sampler.endswith(" a") or "SDE" in sampler or sampler == "DDPM"
    own_eta = 0.0 if sampler == "DDIM" else 1.0 if noisy else None
    if own_eta is not None and not _off(body.eta, own_eta):
        asked[f"eta {body.eta} (the {sampler} sampler here uses {own_eta:g}: send that, or no eta)"] = True
    if noisy and not _off(body.s_noise, 1):
        asked["s_noise"] = True
    if isinstance(body, Txt2ImgBody):
        asked["firstphase_width/firstphase_height"] = bool(body.firstphase_width or body.firstphase_height)
        asked["firstpass_image"] = bool(body.firstpass_image)
    if isinstance(body, Img2ImgBody):
        asked["initial_noise_multiplier"] = not _off(body.initial_noise_multiplier, 1)
        asked["latent_mask"] = bool(body.latent_mask)
    vae = body.override_settings.get("sd_vae")
    asked[f"override_settings.sd_vae {vae!r} (the model's own VAE serves)"] = vae not in SAME_VAE
    delta = body.override_settings.get("eta_noise_seed_delta", 0)
    asked["override_settings.eta_noise_seed_delta"] = not _off(delta, 0)
    refused = [name for name, wanted in asked.items() if wanted]
    if refused:
        raise InvalidRequest(f"not supported by this studio: {', '.join(refused)}; leave them off or empty")


def _common(body: GenerationBody, facts: ServerFacts) -> dict[str, Any]:
    """The request fields every task shares, with the seed resolved once for all batches."""
    sampler, schedule = sampler_for(body.sampler_name or body.sampler_index, body.scheduler)
    _refuse_unsupported(body, sampler)
    max_batches = facts.limits.max_batch
    if not 1 <= body.n_iter <= max_batches:
        raise InvalidRequest(f"n_iter must be between 1 and {max_batches} (--max-batch), got {body.n_iter}")
    seed = resolve_seed(body.seed)
    subseed, subseed_strength = check_variation(body.subseed, body.subseed_strength)
    check_batch_count(
        body.n_iter, subseed if subseed_strength else seed, bool(subseed_strength), body.batch_size, facts.limits
    )
    prompt, negative_prompt = facts.styles.apply(body.prompt, body.negative_prompt, body.styles)
    return {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "sampler": sampler,
        "scheduler": schedule,
        "num_inference_steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "seed": seed,
        "batch_size": body.batch_size,
        "clip_skip": _clip_skip(body.override_settings),
        "subseed": subseed,
        "subseed_strength": subseed_strength,
        "tiling": bool(body.tiling),
    }


def _clip_skip(override_settings: dict[str, Any]) -> int:
    """A1111's clip skip, which its clients send as ``override_settings.CLIP_stop_at_last_layers``."""
    value = override_settings.get("CLIP_stop_at_last_layers", 1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"override_settings.CLIP_stop_at_last_layers must be a whole number, got {value!r}")
    return value


def _job(task: str, request: GenerationRequest, body: GenerationBody) -> A1111Job:
    checkpoint = body.override_settings.get("sd_model_checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise InvalidRequest(
            "override_settings.sd_model_checkpoint must be a model name from the sdapi/v1/sd-models route"
        )
    return A1111Job(
        task=task,
        request=request,
        n_iter=body.n_iter,
        checkpoint=checkpoint or None,
        restore_checkpoint=body.override_settings_restore_afterwards,
        send_images=body.send_images,
        save_images=body.save_images,
        task_id=body.force_task_id or create_task_id(task if task != "inpaint" else "img2img"),
    )


def _soft_inpainting(scripts: dict[str, Any]) -> tuple[dict[str, Any], SoftInpainting | None]:
    """A1111's "soft inpainting" always-on script taken out of ``scripts``: the other scripts, and its settings
    (None when it is absent or off)."""
    rest: dict[str, Any] = {}
    soft = None
    for name, script in scripts.items():
        if name.lower() != SCRIPT_NAME:
            rest[name] = script
            continue
        args = script.get("args", []) if isinstance(script, dict) else None
        if not isinstance(args, list):
            raise InvalidRequest(
                'alwayson_scripts["soft inpainting"] must be {"args": [enabled, schedule bias, preservation '
                "strength, transition contrast boost, mask influence, difference threshold, difference contrast]}"
            )
        soft = from_script_args(args, f"alwayson_scripts[{name!r}].args")
    return rest, soft


def _no_soft_inpainting(soft: SoftInpainting | None) -> None:
    if soft is not None:
        raise InvalidRequest(
            "soft inpainting repaints a masked picture: send it with an img2img request that has a mask, or turn "
            "it off (its first argument false)"
        )


def txt2img_job(body: Txt2ImgBody, facts: ServerFacts) -> A1111Job:
    """Text to image, or ControlNet when ``alwayson_scripts`` has an enabled unit."""
    scripts, soft = _soft_inpainting(body.alwayson_scripts)
    _no_soft_inpainting(soft)
    common = {
        **_common(body, facts),
        "seed_resize_from_w": body.seed_resize_from_w,
        "seed_resize_from_h": body.seed_resize_from_h,
    }
    unit = controlnet_unit(scripts, facts.controlnet_name, facts.max_upload_megapixels, img2img=False)
    if unit is None:
        request = Txt2ImgRequest(
            width=body.width,
            height=body.height,
            **common,
            **_hires(body, common["sampler"], common["scheduler"], facts.styles),
        )
        return _job("txt2img", request, body)
    if body.enable_hr:
        raise InvalidRequest("not supported by this studio: enable_hr (hires fix) with a ControlNet unit")
    request = ControlNetRequest(
        image=unit.image,
        preprocessor=unit.preprocessor,
        low_threshold=unit.low_threshold,
        high_threshold=unit.high_threshold,
        controlnet_conditioning_scale=unit.weight,
        control_guidance_start=unit.guidance_start,
        control_guidance_end=unit.guidance_end,
        resize_mode=unit.resize_mode,
        width=body.width,
        height=body.height,
        **common,
    )
    return _job("controlnet", request, body)


SAME_AS_FIRST_PASS = (None, "", "Use same sampler", "Use same scheduler", "Use same checkpoint")
"""What A1111 clients send for "the hires pass uses the first pass's sampler, schedule, model"."""


def _hires(body: Txt2ImgBody, sampler: str, first_schedule: str, styles: StyleLibrary) -> dict[str, Any]:
    """The hires fix fields of a text to image request (the service checks their ranges), its own sampler,
    schedule and prompts (with the request's styles) included. A model of the hires pass's own is refused: the
    second pass runs on the first pass's."""
    if not body.enable_hr:
        return {}
    name = body.hr_sampler_name if body.hr_sampler_name not in SAME_AS_FIRST_PASS else None
    schedule = body.hr_scheduler if body.hr_scheduler not in SAME_AS_FIRST_PASS else body.scheduler
    second_sampler, second_schedule = sampler_for(name or body.sampler_name or body.sampler_index, schedule)
    if second_schedule != first_schedule:
        raise InvalidRequest(
            f"the hires pass ({second_sampler}, schedule type {second_schedule}) must follow the first pass's "
            f"schedule type ({first_schedule}) here; leave hr_scheduler empty or 'Use same scheduler', or choose "
            "another hr_sampler_name"
        )
    if body.hr_checkpoint_name not in SAME_AS_FIRST_PASS:
        raise InvalidRequest(
            "not supported by this studio: hr_checkpoint_name (another model for the hires pass); leave it empty"
        )
    # A1111 clients often send the prompts again as the hires ones: the same text means the same as empty.
    hr_prompt = body.hr_prompt if body.hr_prompt != body.prompt else ""
    hr_negative_prompt = body.hr_negative_prompt if body.hr_negative_prompt != body.negative_prompt else ""
    hr_prompt, hr_negative_prompt = styles.apply_to_given(hr_prompt, hr_negative_prompt, body.styles)
    return {
        "enable_hr": True,
        "hr_scale": body.hr_scale,
        "hr_upscaler": body.hr_upscaler or DEFAULT_HR_UPSCALER,
        "hr_second_pass_steps": body.hr_second_pass_steps,
        "hr_resize_x": body.hr_resize_x,
        "hr_resize_y": body.hr_resize_y,
        "denoising_strength": DEFAULT_HR_STRENGTH if body.denoising_strength is None else body.denoising_strength,
        "hr_sampler_name": "" if second_sampler == sampler else second_sampler,
        "hr_prompt": hr_prompt,
        "hr_negative_prompt": hr_negative_prompt,
    }


def _resize_mode(value: int) -> str:
    if value in (0, 1, 2):
        return RESIZE_MODES[value]
    raise InvalidRequest(
        f"resize_mode must be 0 (just resize), 1 (crop and resize) or 2 (resize and fill), got {value}"
    )


def img2img_job(body: Img2ImgBody, facts: ServerFacts) -> A1111Job:
    """Image to image; with a ``mask``, inpainting. As A1111 does, the picture (and mask) are first brought to
    ``width x height`` by ``resize_mode``, except with ``inpaint_full_res``, where the picture keeps its size and
    only a crop around the mask is repainted."""
    common = _common(body, facts)
    if body.seed_resize_from_w > 0 or body.seed_resize_from_h > 0:
        raise InvalidRequest(
            "seed_resize_from_w/h (resize seed from) applies to txt2img, where a picture starts from the seed's "
            "noise; leave it at -1 here"
        )
    scripts, soft = _soft_inpainting(body.alwayson_scripts)
    controlnet_unit(scripts, facts.controlnet_name, facts.max_upload_megapixels, img2img=True)
    if len(body.init_images) != 1:
        raise InvalidRequest(f"send exactly one image in init_images (base64), got {len(body.init_images)}")
    mode = _resize_mode(body.resize_mode)
    picture = to_rgb(decode_image(body.init_images[0], "init_images[0]", facts.max_upload_megapixels))
    if body.mask is None:
        _no_soft_inpainting(soft)
        request = Img2ImgRequest(
            image=picture,
            strength=body.denoising_strength,
            width=body.width,
            height=body.height,
            resize_mode=mode,
            **common,
        )
        return _job("img2img", request, body)
    mask: Image.Image = decode_image(body.mask, "mask", facts.max_upload_megapixels)
    if body.inpainting_fill not in INPAINTING_FILL:
        raise InvalidRequest(
            "inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing), "
            f"got {body.inpainting_fill}"
        )
    if body.inpainting_mask_invert not in (0, 1):
        raise InvalidRequest(f"inpainting_mask_invert must be 0 or 1, got {body.inpainting_mask_invert}")
    if not body.inpaint_full_res:
        check_size(body.width, body.height, facts.limits)  # before resizing to it
        mask = mask_from_image(mask, picture.size)
        picture = resize_image(picture, body.width, body.height, mode)
        mask = resize_image(mask.convert("RGB"), body.width, body.height, mode)
    # As A1111: mask_blur, when given, blurs both ways; otherwise each direction has its own.
    blur_x, blur_y = (body.mask_blur,) * 2 if body.mask_blur is not None else (body.mask_blur_x, body.mask_blur_y)
    request = InpaintRequest(
        image=picture,
        mask_image=mask,
        strength=body.denoising_strength,
        mask_blur=blur_x,
        mask_blur_y=blur_y,
        masked_content=INPAINTING_FILL[body.inpainting_fill],
        inpaint_only_masked=body.inpaint_full_res,
        padding=body.inpaint_full_res_padding,
        invert_mask=body.inpainting_mask_invert == 1,
        soft_inpainting=soft,
        **common,
    )
    return _job("inpaint", request, body)
