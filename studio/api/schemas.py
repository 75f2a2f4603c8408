"""The JSON bodies of the A1111-compatible API, with AUTOMATIC1111's field names and defaults.

Unknown fields are ignored, as A1111 ignores them (clients send dozens: hires fix, styles, script arguments...).
Types are checked here (a wrong type answers 422 with the field's name); ranges that depend on the server's
limits (``--max-steps``, ``--max-pixels``...) are checked by the service, with the same messages as the UI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GenerationBody(_Body):
    """The fields txt2img and img2img share."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(
        default_factory=list, description="prompt styles to add, by name (sdapi/v1/prompt-styles)"
    )
    seed: int = Field(-1, description="-1 for random; image i uses seed + i")
    subseed: int = Field(-1, description="the variation seed (-1 for random); image i uses subseed + i")
    subseed_strength: float = Field(0.0, description="variation strength: 0 (off) to 1 (the variation seed's noise)")
    seed_resize_from_w: int = Field(-1, description="resize seed from: width (-1 or 0: off)")
    seed_resize_from_h: int = Field(-1, description="resize seed from: height (-1 or 0: off)")
    sampler_name: str | None = Field(None, description='an A1111 sampler name, e.g. "DPM++ 2M" or "Euler a"')
    sampler_index: str = Field("Euler", description="the older name of sampler_name, used when that is missing")
    scheduler: str | None = Field(None, description='"Automatic", "Uniform" or "Karras" (with sampler_name)')
    batch_size: int = Field(1, description="images per batch (at most --max-batch)")
    n_iter: int = Field(1, description="batches, one after the other (at most --max-batch)")
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = Field(None, description="not supported: must be false")
    tiling: bool | None = Field(None, description="pictures that repeat without a seam (textures)")
    override_settings: dict[str, Any] = Field(
        default_factory=dict, description="sd_model_checkpoint switches the model for this request"
    )
    override_settings_restore_afterwards: bool = True
    script_name: str | None = Field(None, description="scripts are not supported: must be empty")
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = Field(False, description="save the images in the studio's outputs folder too")
    alwayson_scripts: dict[str, Any] = Field(
        default_factory=dict, description="only controlnet (sd-webui-controlnet units, canny or none)"
    )
    force_task_id: str | None = Field(None, description="the job's id, as sdapi/v1/progress reports it")
    infotext: str | None = Field(None, description="not supported: must be empty (send the fields themselves)")
    do_not_save_samples: bool = Field(False, description="changes no pixels: the studio saves only with save_images")
    do_not_save_grid: bool = Field(False, description="changes no pixels: the studio saves no grids from the API")
    comments: dict[str, Any] | None = Field(None, description="changes no pixels: not written into the images")
    eta: float | None = Field(None, description="only the sampler's own (DDIM 0, ancestral/SDE 1); others refused")
    s_min_uncond: float | None = Field(None, description="not supported: must be 0 (negative guidance minimum sigma)")
    s_churn: float | None = Field(None, description="not supported: must be 0")
    s_tmin: float | None = Field(None, description="changes no pixels without s_churn")
    s_tmax: float | None = Field(None, description="changes no pixels without s_churn")
    s_noise: float | None = Field(None, description="not supported: must be 1")
    refiner_checkpoint: str | None = Field(None, description="not supported: must be empty")
    refiner_switch_at: float | None = Field(None, description="changes no pixels without refiner_checkpoint")
    disable_extra_networks: bool = Field(False, description="not supported: must be false (LoRAs always apply)")


class Txt2ImgBody(GenerationBody):
    enable_hr: bool = Field(False, description="hires fix: upscale, then redraw at denoising_strength")
    denoising_strength: float | None = Field(None, description="the hires pass's strength (0.7 when missing)")
    hr_scale: float = Field(2.0, description="upscale by (1-4)")
    hr_upscaler: str | None = Field(None, description='"Latent" (the default) and its variants, "Lanczos", "Nearest"')
    hr_second_pass_steps: int = Field(0, description="the hires pass's steps; 0: as many as steps")
    hr_resize_x: int = Field(0, description="resize to this width instead of hr_scale (0: follow the height)")
    hr_resize_y: int = Field(0, description="resize to this height instead of hr_scale (0: follow the width)")
    hr_sampler_name: str | None = Field(None, description="the hires pass's sampler; empty: the first pass's")
    hr_scheduler: str | None = Field(None, description="the hires pass's schedule (with hr_sampler_name)")
    hr_checkpoint_name: str | None = Field(None, description="another model for the hires pass is not supported")
    firstphase_width: int = Field(0, description="A1111's old hires sizes: not supported, must be 0")
    firstphase_height: int = Field(0, description="A1111's old hires sizes: not supported, must be 0")
    firstpass_image: str | None = Field(None, description="not supported: must be empty")
    hr_prompt: str = Field("", description="the hires pass's own prompt; empty (or the prompt) for the prompt")
    hr_negative_prompt: str = Field(
        "", description="the hires pass's own negative prompt; empty (or the negative prompt) for the negative prompt"
    )


class Img2ImgBody(GenerationBody):
    """Image to image; with a ``mask`` it is inpainting."""

    init_images: list[str] = Field(default_factory=list, description="one base64 image (PNG, JPEG, WebP)")
    resize_mode: int = Field(0, description="0 just resize, 1 crop and resize, 2 resize and fill")
    denoising_strength: float = 0.75
    mask: str | None = Field(None, description="base64 mask, white = repaint; makes this an inpaint")
    mask_blur: int | None = Field(None, description="blurs the mask both ways; when given, sets mask_blur_x and _y")
    mask_blur_x: int = Field(4, description="the mask's horizontal blur (standard deviation, pixels)")
    mask_blur_y: int = Field(4, description="the mask's vertical blur (standard deviation, pixels)")
    inpainting_fill: int = Field(0, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = Field(True, description="inpaint only a crop around the mask, then paste it back")
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = Field(0, description="1 repaints everything but the mask")
    include_init_images: bool = False
    image_cfg_scale: float | None = Field(None, description="changes no pixels: InstructPix2Pix models only")
    initial_noise_multiplier: float | None = Field(None, description="not supported: must be 1")
    latent_mask: str | None = Field(None, description="not supported: must be empty")


class ImageBody(_Body):
    image: str = Field(description="a base64 image, optionally as a data: URL")


class GenerationResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs, each with its A1111 parameters text chunk")
    parameters: dict[str, Any] = Field(description="the request as it was understood")
    info: str = Field(description="JSON: seed, all_seeds, infotexts, ...")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(description="0 to 1, over all of the caller's batches")
    eta_relative: float = Field(description="estimated seconds left")
    state: ProgressState
    current_image: str | None = Field(None, description="the latest live preview, base64 PNG")
    textinfo: str | None = None
    current_task: str | None = None


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, str]
    parameters: dict[str, Any]
