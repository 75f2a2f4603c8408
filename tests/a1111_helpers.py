"""What the A1111 API tests share: images as base64 and back, and request bodies shaped as clients send them."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
from PIL import Image, ImageDraw

TIMEOUT = httpx.Timeout(120.0)


def b64_png(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/png;base64,{encoded}" if data_url else encoded


def decoded(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def info_of(response: httpx.Response) -> dict[str, Any]:
    return json.loads(response.json()["info"])


def square_picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A white square on black: its Canny edges are the square's outline."""
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).rectangle((16, 16, size[0] - 17, size[1] - 17), fill="white")
    return image


def krita_like_body(**overrides: Any) -> dict[str, Any]:
    """A txt2img body with everything a painting-app plugin or ``webuiapi`` sends, most of which the studio
    does not use: hires-fix fields at their off values, styles, sampler tuning, saving switches, script slots."""
    body: dict[str, Any] = {
        "prompt": "a red house by the sea",
        "negative_prompt": "blurry, lowres",
        "styles": [],
        "seed": 1234,
        "subseed": -1,
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": -1,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "sampler_index": "Euler",
        "batch_size": 1,
        "n_iter": 1,
        "steps": 3,
        "cfg_scale": 6.5,
        "width": 64,
        "height": 64,
        "restore_faces": False,
        "tiling": False,
        "do_not_save_samples": True,
        "do_not_save_grid": True,
        "eta": 0,
        "s_min_uncond": 0,
        "s_churn": 0,
        "s_tmax": 0,
        "s_tmin": 0,
        "s_noise": 1,
        "enable_hr": False,
        "firstphase_width": 0,
        "firstphase_height": 0,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 0,
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "hr_checkpoint_name": None,
        "hr_sampler_name": None,
        "hr_prompt": "",
        "hr_negative_prompt": "",
        "denoising_strength": 0.7,
        "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic"},
        "override_settings_restore_afterwards": True,
        "script_name": None,
        "script_args": [],
        "send_images": True,
        "save_images": False,
        "alwayson_scripts": {},
        "infotext": None,
        "force_task_id": "task(abc123)",
        "comments": {"client": "a painting app"},
    }
    body.update(overrides)
    return body
