"""The A1111 API as A1111's own models describe it: whole ``info`` answers, the routes clients read at connect time,
every request field honoured, refused by name or documented, models listed with their hashes, and only the models
that can load."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel, ConfigDict
from sd_backend_client.api.webui.response_formats import GenerationInfoData

from studio import model_hash
from studio.api import build_api
from studio.api.schemas import Img2ImgBody, Txt2ImgBody
from studio.api.scripts import SCRIPTS, Script, ScriptArg, script_info, scripts_list
from studio.composition import Studio, build_studio
from studio.images import blur
from studio.latent_fill import latent_nothing
from studio.metadata import parse_parameters, read_metadata
from studio.micro.location import MICRO_MODEL
from studio.pnginfo import settings_from_metadata
from tests.a1111_helpers import TIMEOUT, b64_png, decoded, square_picture
from tests.conftest import make_settings
from tests.test_a1111_api import folder_sha256
from tests.test_a1111_clients import paused_at_step

SMALL = {"steps": 3, "width": 64, "height": 64, "cfg_scale": 7, "sampler_name": "Euler", "seed": 5}
README = Path(__file__).resolve().parents[1] / "README.md"


class A1111Info(BaseModel):
    """The keys of A1111 1.10's ``info`` (modules/processing.py, ``Processed.js()``) with the types A1111 gives
    them; every key required, none coerced."""

    model_config = ConfigDict(strict=True, extra="allow")

    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    subseed: int
    all_subseeds: list[int]
    subseed_strength: float
    width: int
    height: int
    sampler_name: str
    cfg_scale: float
    steps: int
    batch_size: int
    restore_faces: bool | None
    face_restoration_model: str | None
    sd_model_name: str
    sd_model_hash: str
    sd_vae_name: str | None
    sd_vae_hash: str | None
    seed_resize_from_w: int
    seed_resize_from_h: int
    denoising_strength: float | None
    extra_generation_params: dict[str, Any]
    index_of_first_image: int
    infotexts: list[str]
    styles: list[str]
    job_timestamp: str
    clip_skip: int
    is_using_inpainting_conditioning: bool
    version: str


def whole_info(response: httpx.Response) -> dict[str, Any]:
    """The answer's ``info``, checked against A1111's model and against the model sd-backend-client reads it with
    (a client that discards the whole answer when a key is missing or mistyped)."""
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    A1111Info.model_validate(info)
    GenerationInfoData.model_validate(info)
    return info


@pytest.fixture(scope="module")
def api(tiny_model: Path, tiny_controlnet: Path) -> Iterator[tuple[TestClient, Studio]]:
    studio = build_studio(make_settings(tiny_model, None, controlnet_model=str(tiny_controlnet)))
    app = FastAPI()
    app.include_router(build_api(studio))
    with TestClient(app) as client:
        yield client, studio


def half_mask() -> Image.Image:
    """White (repaint) on the right half: a vertical edge at x = 32."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    return mask


def inpaint_body(**fields: object) -> dict[str, object]:
    return {
        "prompt": "a boat",
        "init_images": [b64_png(square_picture())],
        "mask": b64_png(half_mask()),
        "inpaint_full_res": False,
        "denoising_strength": 0.9,
        **SMALL,
        **fields,
    }


CONTROLNET_UNIT = {"image": b64_png(square_picture()), "module": "canny", "model": "tiny-controlnet"}
JOBS: dict[str, tuple[str, dict[str, object]]] = {
    "txt2img": ("txt2img", {"prompt": "a cat", **SMALL}),
    "hires": ("txt2img", {"prompt": "a cat", **SMALL, "enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 2}),
    "img2img": ("img2img", {"prompt": "a dog", "init_images": [b64_png(square_picture())], **SMALL}),
    "inpaint": ("img2img", inpaint_body()),
    "controlnet": (
        "txt2img",
        {"prompt": "a box", **SMALL, "alwayson_scripts": {"controlNet": {"args": [CONTROLNET_UNIT]}}},
    ),
}


@pytest.mark.parametrize("kind", list(JOBS))
def test_every_answer_carries_a1111_s_info_keys_and_types(
    api: tuple[TestClient, Studio], tiny_model: Path, kind: str
) -> None:
    client, _studio = api
    route, body = JOBS[kind]
    info = whole_info(client.post(f"/sdapi/v1/{route}", json=body))
    short = folder_sha256(tiny_model)[:10]
    assert info["sd_model_hash"] == short and info["sd_model_name"] == "tiny-sd"
    assert info["sd_vae_name"] is None and info["sd_vae_hash"] is None, "the model's own VAE, as A1111 says it"
    assert re.fullmatch(r"\d{14}", info["job_timestamp"]), "A1111's YYYYmmddHHMMSS"
    assert f"Model hash: {short}, Model: tiny-sd" in info["infotexts"][0], "A1111's parameters text"
    assert info["is_using_inpainting_conditioning"] is (kind == "inpaint")


def test_an_interrupted_answer_is_whole_and_progress_reports_the_forced_task_id(
    server: str, served_studio: Studio
) -> None:
    body = {"prompt": "a red house", **SMALL, "steps": 4, "n_iter": 2, "force_task_id": "task(client-42)"}
    with ThreadPoolExecutor(max_workers=1) as pool, paused_at_step(served_studio, step=2) as (reached, release):
        running = pool.submit(httpx.post, server + "sdapi/v1/txt2img", json=body, timeout=TIMEOUT)
        assert reached.wait(timeout=120)
        assert httpx.get(server + "sdapi/v1/progress").json()["current_task"] == "task(client-42)"
        assert httpx.post(server + "sdapi/v1/interrupt").json() == {"interrupted": True}
        release.set()
        stopped = running.result()
    info = whole_info(stopped)
    assert info["interrupted"] is True and info["all_seeds"] == [] and stopped.json()["images"] == []
    assert (info["width"], info["height"]) == (64, 64) and info["sd_model_hash"]


# A1111 1.10's request models (modules/api/models.py builds them from StableDiffusionProcessingTxt2Img/Img2Img).
A1111_COMMON = (
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "sampler_name", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale", "width",
    "height", "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid", "eta", "denoising_strength",
    "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "override_settings",
    "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at", "disable_extra_networks",
    "comments", "sampler_index", "script_name", "script_args", "send_images", "save_images", "alwayson_scripts",
    "force_task_id", "infotext",
)  # fmt: skip
A1111_TXT2IMG = (
    *A1111_COMMON, "enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt", "firstpass_image",
)  # fmt: skip
A1111_IMG2IMG = (
    *A1111_COMMON, "init_images", "resize_mode", "image_cfg_scale", "mask", "mask_blur_x", "mask_blur_y",
    "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert",
    "initial_noise_multiplier", "latent_mask", "include_init_images",
)  # fmt: skip
NO_PIXELS = (
    "do_not_save_samples", "do_not_save_grid", "comments", "s_tmin", "s_tmax", "refiner_switch_at",
    "image_cfg_scale", "send_images", "save_images", "include_init_images", "override_settings_restore_afterwards",
)  # fmt: skip
"""Fields that change no pixels here (the README's A1111 section says why)."""
REFUSED: dict[str, tuple[str, dict[str, object]]] = {
    "restore_faces": ("txt2img", {"restore_faces": True}),
    "script_name": ("txt2img", {"script_name": "x/y/z plot"}),
    "infotext": ("txt2img", {"infotext": "a cat\nSteps: 20"}),
    "s_min_uncond": ("txt2img", {"s_min_uncond": 0.5}),
    "s_churn": ("txt2img", {"s_churn": 1.0}),
    "s_noise": ("txt2img", {"sampler_name": "Euler a", "s_noise": 0.5}),
    "eta": ("txt2img", {"sampler_name": "DDIM", "eta": 0.5}),
    "refiner_checkpoint": ("txt2img", {"refiner_checkpoint": "sd_xl_refiner"}),
    "disable_extra_networks": ("txt2img", {"disable_extra_networks": True}),
    "firstphase_width": ("txt2img", {"firstphase_width": 32}),
    "firstpass_image": ("txt2img", {"firstpass_image": b64_png(square_picture())}),
    "hr_checkpoint_name": ("txt2img", {"enable_hr": True, "hr_checkpoint_name": "another"}),
    "initial_noise_multiplier": ("img2img", {"initial_noise_multiplier": 0.5}),
    "latent_mask": ("img2img", {"latent_mask": b64_png(half_mask())}),
    "resize_mode": ("img2img", {"resize_mode": 3}),
    "sd_vae": ("txt2img", {"override_settings": {"sd_vae": "vae-ft-mse-840000"}}),
    "eta_noise_seed_delta": ("txt2img", {"override_settings": {"eta_noise_seed_delta": 31337}}),
}


def test_every_a1111_request_field_is_declared() -> None:
    assert set(A1111_TXT2IMG) <= set(Txt2ImgBody.model_fields), set(A1111_TXT2IMG) - set(Txt2ImgBody.model_fields)
    assert set(A1111_IMG2IMG) <= set(Img2ImgBody.model_fields), set(A1111_IMG2IMG) - set(Img2ImgBody.model_fields)


@pytest.mark.parametrize("field", list(REFUSED))
def test_fields_that_would_change_the_picture_unasked_are_refused_by_name(
    api: tuple[TestClient, Studio], field: str
) -> None:
    client, _studio = api
    route, fields = REFUSED[field]
    body = inpaint_body(**fields) if route == "img2img" else {"prompt": "a cat", **SMALL, **fields}
    answer = client.post(f"/sdapi/v1/{route}", json=body)
    assert answer.status_code == 422 and field in answer.json()["detail"], answer.text


def test_fields_that_change_no_pixels_are_documented() -> None:
    section = README.read_text().split("### Fields that change no pixels", 1)[1].split("\n#", 1)[0]
    for field in NO_PIXELS:
        assert f"`{field}`" in section, field


def inpainted(client: TestClient, **fields: object) -> np.ndarray:
    response = client.post("/sdapi/v1/img2img", json=inpaint_body(**fields))
    assert response.status_code == 200, response.text
    return np.asarray(decoded(response.json()["images"][0]).convert("RGB")).astype(int)


def test_mask_blur_x_and_y_blur_each_direction_as_a1111(api: tuple[TestClient, Studio]) -> None:
    client, _studio = api
    original = np.asarray(square_picture().convert("RGB")).astype(int)
    down_only = inpainted(client, mask_blur_x=0, mask_blur_y=8)
    across = inpainted(client, mask_blur_x=8, mask_blur_y=0)
    assert (down_only[:, :32] == original[:, :32]).all(), "a vertical blur leaves a vertical edge hard"
    assert (across[:, 26:32] != original[:, 26:32]).any(), "a horizontal blur softens it into the kept half"
    sharp = inpainted(client, mask_blur_x=0, mask_blur_y=0)
    assert (inpainted(client) != sharp).any(), "the default blur (4, 4) is not the same as none"
    assert (inpainted(client, mask_blur=0, mask_blur_x=8) == sharp).all(), "mask_blur, when given, sets both"
    soft = np.asarray(blur(half_mask(), 6, 0)).astype(int)
    assert (soft[0] == soft[-1]).all() and 0 < soft[0, 30] < 255, "the image helper: across only"


def test_inpainting_fill_3_starts_from_zeroed_latents(api: tuple[TestClient, Studio]) -> None:
    client, studio = api
    pipeline = studio.manager.current().pipeline
    call = {"image": square_picture(), "mask_image": half_mask(), "width": 64, "height": 64}
    made = latent_nothing(pipeline, call)
    latents = made["image"]
    with torch.no_grad():
        pixels = pipeline.image_processor.preprocess(square_picture(), height=64, width=64)
        encoded = pipeline.vae.encode(pixels).latent_dist.mode() * pipeline.vae.config.scaling_factor
    half = latents.shape[3] // 2
    assert (latents[..., half:] == 0).all(), "the masked latents are zeros"
    assert torch.equal(latents[..., :half], encoded[..., :half]), "the rest is the picture, encoded"
    nothing = inpainted(client, inpainting_fill=3, mask_blur=0)
    original = inpainted(client, inpainting_fill=1, mask_blur=0)
    assert (nothing[:, 32:] != original[:, 32:]).any() and (nothing[:, :32] == original[:, :32]).all()
    assert "Masked content: latent nothing" in read_metadata(decoded_first(client)).parameters_text


def decoded_first(client: TestClient) -> Image.Image:
    response = client.post("/sdapi/v1/img2img", json=inpaint_body(inpainting_fill=3))
    return decoded(response.json()["images"][0])


def test_connect_time_routes_answer_in_a1111_s_shape(api: tuple[TestClient, Studio]) -> None:
    client, _studio = api
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": ["controlnet"], "img2img": ["soft inpainting"]}
    for entry in client.get("/sdapi/v1/script-info").json():
        assert set(entry) == {"name", "is_alwayson", "is_img2img", "args"}
    assert {"name": "Latent"} in client.get("/sdapi/v1/latent-upscale-modes").json()
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and not any("/" in str(value) for value in flags.values()), "no server paths"
    assert client.get("/sdapi/v1/face-restorers").json() == []
    assert client.get("/controlnet/version").json() == {"version": 2}
    assert client.get("/controlnet/settings").json()["control_net_unit_count"] == 1
    canny = client.get("/controlnet/control_types").json()["control_types"]["Canny"]
    assert canny["default_option"] == "canny" and canny["default_model"] == "tiny-controlnet"
    assert "canny" in canny["module_list"] and "tiny-controlnet" in canny["model_list"]


def test_the_script_lists_come_from_one_tuple() -> None:
    more = (*SCRIPTS, Script("outpainting", txt2img=False, img2img=True, args=(ScriptArg("Pixels", 128),)))
    assert scripts_list(more)["img2img"] == ["soft inpainting", "outpainting"]
    entry = next(item for item in script_info(more) if item["name"] == "outpainting")
    assert entry["is_img2img"] is True and entry["args"][0]["label"] == "Pixels"


def test_sd_models_offers_the_pickers_models_with_their_hashes(
    tiny_model: Path, other_tiny_model: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(other_tiny_model, models / "other-sd")
    (models / "old.ckpt").write_bytes(b"pickle")  # refused without --allow-pickle: not offered
    studio = build_studio(make_settings(tiny_model, None, models_dir=models))
    app = FastAPI()
    app.include_router(build_api(studio))
    client = TestClient(app)

    def listed() -> dict[str, dict[str, Any]]:
        return {entry["model_name"]: entry for entry in client.get("/sdapi/v1/sd-models").json()}

    first = listed()
    assert list(first) == ["tiny-sd", "other-sd"], "the serving model, then --models-dir's, as the picker has them"
    assert first["tiny-sd"]["sha256"] == folder_sha256(tiny_model)
    assert first["other-sd"]["sha256"] is None, "not hashed until it serves (A1111 lists unhashed models so too)"
    body = {"prompt": "a cat", **SMALL, "override_settings": {"sd_model_checkpoint": "other-sd"}}
    info = whole_info(client.post("/sdapi/v1/txt2img", json=body))
    expected = folder_sha256(models / "other-sd")
    assert info["sd_model_hash"] == expected[:10] and info["sd_model_name"] == "other-sd"
    assert listed()["other-sd"]["title"] == f"other-sd [{expected[:10]}]"
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": expected[:10]}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_checkpoint_hash"] == expected, "chosen by its short hash"
    refused = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": str(tmp_path / "elsewhere")})
    assert refused.status_code == 422, "no path outside the list"


def test_a_default_that_could_not_be_loaded_is_not_listed(tmp_path: Path) -> None:
    settings = make_settings("someone/not-in-the-cache", None, micro_fallback=True, offline=True, models_dir=tmp_path)
    studio = build_studio(settings)
    assert studio.manager.source == MICRO_MODEL
    app = FastAPI()
    app.include_router(build_api(studio))
    client = TestClient(app)
    assert [entry["model_name"] for entry in client.get("/sdapi/v1/sd-models").json()] == ["micro"]
    chosen = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "someone/not-in-the-cache"})
    assert chosen.status_code == 422 and "sd-models" in chosen.json()["detail"]


def test_a_single_file_hash_is_its_sha256_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights" * 1000)
    reads: list[Path] = []
    opened = Path.open

    def counting(path: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting)
    assert model_hash.sha256_of(str(checkpoint)) == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert model_hash.sha256_of(str(checkpoint)) == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert [path for path in reads if path == checkpoint] == [checkpoint], "hashed once, then from the cache"
    checkpoint.write_bytes(b"other weights")
    assert model_hash.sha256_of(str(checkpoint)) == hashlib.sha256(b"other weights").hexdigest(), "a new file"


def test_a_folder_hash_reads_its_weight_files_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"unet")
    (tmp_path / "text_encoder" / "model.safetensors").write_bytes(b"text")
    (tmp_path / "model_index.json").write_text("{}")
    expected = hashlib.sha256(b"text" + b"unet").hexdigest()
    assert model_hash.sha256_of(str(tmp_path)) == expected
    (tmp_path / "model_index.json").write_text('{"changed": true}')
    assert model_hash.sha256_of(str(tmp_path)) == expected, "configs are not weights"
    assert model_hash.sha256_of("someone/not-in-the-cache") is None, "a Hub model not downloaded has none"


def test_png_info_reads_the_model_hash_back(api: tuple[TestClient, Studio]) -> None:
    client, _studio = api
    made = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", **SMALL})
    picture = decoded(made.json()["images"][0])
    answer = client.post("/sdapi/v1/png-info", json={"image": made.json()["images"][0]}).json()
    assert re.fullmatch(r"[0-9a-f]{10}", answer["parameters"]["Model hash"])
    sent = settings_from_metadata(read_metadata(picture), max_steps=150, max_side=2048)
    assert sent is not None and sent.seed == 5 and sent.steps == 3, "the UI's PNG Info reads it as before"
    theirs = parse_parameters("a castle\nSteps: 20, Sampler: Euler, Model hash: 6ce0161689, Model: v1-5")
    assert theirs.fields["Model hash"] == "6ce0161689"


def test_a_controlnet_unit_s_control_mode_other_than_balanced_is_refused(api: tuple[TestClient, Studio]) -> None:
    client, _studio = api
    unit = {**CONTROLNET_UNIT, "control_mode": "ControlNet is more important"}
    body = {"prompt": "a box", **SMALL, "alwayson_scripts": {"controlnet": {"args": [unit]}}}
    answer = client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 422 and "control_mode" in answer.json()["detail"]
    balanced = {**CONTROLNET_UNIT, "control_mode": 0}
    body["alwayson_scripts"] = {"controlnet": {"args": [balanced]}}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200
