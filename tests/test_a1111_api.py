"""The A1111-compatible REST API on the studio's own server: A1111-shaped JSON in, A1111-shaped answers out."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from studio.api import build_api
from studio.composition import Studio, build_studio
from studio.metadata import parse_parameters, read_metadata, write_image
from studio.requests import Txt2ImgRequest
from studio.ui import create_demo, launch
from tests.a1111_helpers import TIMEOUT, b64_png, decoded, info_of, krita_like_body, square_picture
from tests.conftest import make_settings
from tests.test_security import png_header_only

SMALL = {"steps": 3, "width": 64, "height": 64, "cfg_scale": 7}


def post(server: str, route: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server + route.lstrip("/"), json=body, timeout=TIMEOUT)


def saved_pngs(studio: Studio) -> list[Path]:
    root = studio.settings.outputs
    assert root is not None
    return sorted(root.rglob("*.png"))


def test_txt2img_answers_with_images_parameters_and_info(server: str, served_studio: Studio) -> None:
    before = saved_pngs(served_studio)
    body = {"prompt": "a cat", "negative_prompt": "blurry", "seed": 21, "sampler_name": "Euler a", **SMALL}
    response = post(server, "/sdapi/v1/txt2img", {**body, "height": 96, "batch_size": 2, "n_iter": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    info = info_of(response)
    assert info["all_seeds"] == [21, 22, 23, 24], "batch k starts at seed + k * batch_size, as in A1111"
    assert info["seed"] == 21 and info["sampler_name"] == "Euler a" and info["steps"] == 3
    assert len(info["infotexts"]) == 4 and info["sd_model_name"] == "tiny-sd"
    assert answer["parameters"]["prompt"] == "a cat" and answer["parameters"]["n_iter"] == 2
    assert len(answer["images"]) == 4
    for image, seed, infotext in zip(answer["images"], info["all_seeds"], info["infotexts"], strict=True):
        picture = decoded(image)
        assert picture.format == "PNG" and picture.size == (64, 96)
        text = read_metadata(picture).parameters_text
        assert text == infotext, "each PNG carries its own A1111 parameters"
        fields = parse_parameters(text).fields
        assert (fields["Seed"], fields["Steps"], fields["Sampler"]) == (str(seed), "3", "Euler a")
        assert parse_parameters(text).negative_prompt == "blurry"
    assert saved_pngs(served_studio) == before, "save_images defaults to false, as in A1111's API"
    saved = post(server, "/sdapi/v1/txt2img", {**body, "save_images": True})
    assert saved.status_code == 200
    assert len(saved_pngs(served_studio)) == len(before) + 1


def test_a_real_world_body_with_many_extra_fields(server: str) -> None:
    response = post(server, "/sdapi/v1/txt2img", krita_like_body())
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["seed"] == 1234 and info["cfg_scale"] == 6.5
    assert info["sampler_name"] == "DPM++ 2M Karras", "sampler_name + scheduler Karras is A1111 1.9's spelling"
    assert "Sampler: DPM++ 2M Karras" in info["infotexts"][0]
    assert decoded(response.json()["images"][0]).size == (64, 64)


def test_the_api_makes_the_same_image_as_the_studio(server: str, served_studio: Studio) -> None:
    response = post(server, "/sdapi/v1/txt2img", {"prompt": "a blue tree", "seed": 77, "sampler_name": "DDIM", **SMALL})
    direct = served_studio.service.txt2img(
        Txt2ImgRequest("a blue tree", sampler="DDIM", num_inference_steps=3, width=64, height=64, seed=77)
    )
    assert decoded(response.json()["images"][0]).convert("RGB").tobytes() == direct.images[0].image.tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": "many"}, "steps: Input should be a valid integer"),
        ({"cfg_scale": [7]}, "cfg_scale: Input should be a valid number"),
        ({"width": 100}, "width must be a multiple of 8, got 100; try 104 or 96"),
        ({"steps": 0}, "steps must be between 1 and"),
        ({"batch_size": 99}, "batch_size must be between 1 and 8 (--max-batch)"),
        ({"n_iter": 0}, "n_iter must be between 1 and 8"),
        ({"seed": -7}, "seed must be -1 (random) or between 0 and"),
        ({"subseed_strength": 1.5}, "subseed_strength (variation strength) must be between 0 and 1, got 1.5"),
        ({"subseed_strength": 0.5, "subseed": 2**32 - 1, "n_iter": 2}, "subseed 4294967295 leaves no room for 2"),
        ({"seed_resize_from_w": 100, "seed_resize_from_h": 64}, "resize seed from: width must be a multiple of 8"),
        ({"seed_resize_from_w": 512, "seed_resize_from_h": -1}, "resize seed from needs both a width and a height"),
        ({"sampler_name": "Nope"}, "unknown sampler_name 'Nope'; choose one of: DPM++ 2M"),
        ({"sampler_name": "Euler a", "scheduler": "Exponential"}, "the Euler a sampler cannot follow the Exponential"),
        ({"sampler_name": "Euler", "scheduler": "cosine"}, "unknown scheduler 'cosine'; choose one of: Automatic"),
        ({"enable_hr": True, "hr_checkpoint_name": "other"}, "not supported by this studio: hr_checkpoint_name"),
        ({"enable_hr": True, "hr_sampler_name": "Nope"}, "unknown sampler_name 'Nope'"),
        ({"enable_hr": True, "hr_checkpoint_name": "other.safetensors"}, "hr_checkpoint_name (another model for"),
        ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler must be one of: Latent, Latent (antiali"),
        ({"enable_hr": True, "hr_resize_x": 4096}, "the hires fix would end at 4096x4096: 4096x4096 is 16,777,216"),
        (
            {"enable_hr": True, "alwayson_scripts": {"controlnet": {"args": [{"image": b64_png(square_picture())}]}}},
            "enable_hr (hires fix) with a ControlNet unit",
        ),
        ({"alwayson_scripts": {"ADetailer": {"args": [True]}}}, "always-on script 'ADetailer' is not available"),
    ],
)
def test_bad_values_answer_422_with_a_message(server: str, change: dict[str, object], message: str) -> None:
    response = post(server, "/sdapi/v1/txt2img", {"prompt": "x", **SMALL, **change})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert "Traceback" not in response.text


def test_txt2img_with_the_hires_fix_as_a1111_clients_send_it(server: str) -> None:
    """``enable_hr`` with A1111's hires fields: the picture comes back upscaled, its text says how, as A1111's
    does (Size is the first pass's), and the same request makes the same picture."""
    body = {
        "prompt": "a cat",
        "seed": 5,
        **SMALL,
        "enable_hr": True,
        "hr_scale": 1.5,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.6,
        "hr_sampler_name": "Use same sampler",
        "hr_prompt": "",
    }
    response = post(server, "/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    info = info_of(response)
    picture = decoded(response.json()["images"][0])
    assert picture.size == (96, 96)
    fields = parse_parameters(info["infotexts"][0]).fields
    assert (fields["Size"], fields["Hires upscale"], fields["Hires steps"]) == ("64x64", "1.5", "2")
    assert (fields["Hires upscaler"], fields["Denoising strength"]) == ("Latent", "0.6")
    assert info["denoising_strength"] == 0.6
    again = decoded(post(server, "/sdapi/v1/txt2img", body).json()["images"][0])
    assert np.array_equal(np.asarray(picture), np.asarray(again))
    plain = decoded(post(server, "/sdapi/v1/txt2img", {**body, "enable_hr": False}).json()["images"][0])
    assert plain.size == (64, 64), "enable_hr false: the hires fields change nothing"
    assert "Hires sampler" not in info["infotexts"][0], "the same sampler: not written"
    other = post(server, "/sdapi/v1/txt2img", {**body, "hr_sampler_name": "DDIM"})
    assert parse_parameters(info_of(other)["infotexts"][0]).fields["Hires sampler"] == "DDIM"
    redrawn = decoded(other.json()["images"][0])
    assert not np.array_equal(np.asarray(picture), np.asarray(redrawn)), "the second pass ran with DDIM"
    repeated = post(server, "/sdapi/v1/txt2img", {**body, "hr_prompt": "a cat", "negative_prompt": "x"})
    assert "Hires prompt" not in info_of(repeated)["infotexts"][0], "the prompt sent again: the same as empty"
    styled = {**body, "hr_prompt": "a dog", "hr_negative_prompt": "fog", "styles": ["Photograph"]}
    own = post(server, "/sdapi/v1/txt2img", styled)
    assert own.status_code == 200, own.text
    fields = parse_parameters(info_of(own)["infotexts"][0]).fields
    assert fields["Hires prompt"].startswith("a dog, ") and fields["Hires negative prompt"].startswith("fog, ")
    assert fields["Hires prompt"] != "a dog", "the request's styles are added to the hires prompts too"


def test_resize_seed_from_in_txt2img_and_a_message_in_img2img(server: str) -> None:
    """A1111's ``seed_resize_from_w/h``: text to image builds its noise around the seed's at that size (the same
    size: the same picture) and says so; image to image refuses it by name."""
    body = {"prompt": "a cat", "seed": 5, **SMALL, "width": 128}
    plain = post(server, "/sdapi/v1/txt2img", body)
    resized = post(server, "/sdapi/v1/txt2img", {**body, "seed_resize_from_w": 64, "seed_resize_from_h": 64})
    assert resized.status_code == 200, resized.text
    info = info_of(resized)
    assert (info["seed_resize_from_w"], info["seed_resize_from_h"]) == (64, 64)
    assert "Seed resize from: 64x64" in info["infotexts"][0] and info_of(plain)["seed_resize_from_w"] == -1
    picture, other = (decoded(answer.json()["images"][0]) for answer in (plain, resized))
    assert not np.array_equal(np.asarray(picture), np.asarray(other))
    same = post(server, "/sdapi/v1/txt2img", {**body, "seed_resize_from_w": 128, "seed_resize_from_h": 64})
    assert np.array_equal(np.asarray(picture), np.asarray(decoded(same.json()["images"][0])))
    redraw = {"init_images": [b64_png(square_picture())], "prompt": "a cat", **SMALL, "seed_resize_from_w": 64}
    refused = post(server, "/sdapi/v1/img2img", {**redraw, "seed_resize_from_h": 64})
    assert refused.status_code == 422 and "resize seed from) applies to txt2img" in refused.json()["detail"]


def test_variation_seeds_count_up_across_batches_and_the_seed_stays(server: str) -> None:
    """As A1111: with a variation strength every image keeps the seed and image k gets variation seed subseed + k,
    through all ``n_iter`` batches; any one of them comes back alone from its own seeds."""
    body = {"prompt": "a cat", "seed": 5, "subseed": 100, "subseed_strength": 0.4, "batch_size": 2, "n_iter": 2}
    response = post(server, "/sdapi/v1/txt2img", {**body, **SMALL})
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["all_seeds"] == [5, 5, 5, 5] and info["all_subseeds"] == [100, 101, 102, 103]
    assert (info["subseed"], info["subseed_strength"]) == (100, 0.4)
    fields = parse_parameters(info["infotexts"][3]).fields
    assert (fields["Seed"], fields["Variation seed"], fields["Variation seed strength"]) == ("5", "103", "0.4")
    fourth = decoded(response.json()["images"][3])
    alone = {**body, "subseed": 103, "batch_size": 1, "n_iter": 1, **SMALL}
    again = decoded(post(server, "/sdapi/v1/txt2img", alone).json()["images"][0])
    difference = np.abs(np.asarray(fourth, dtype=float) - np.asarray(again, dtype=float)).mean()
    assert difference < 0.5, "the fourth image alone (batched arithmetic differs by rounding)"
    plain = info_of(post(server, "/sdapi/v1/txt2img", {"prompt": "a cat", "seed": 5, "batch_size": 2, **SMALL}))
    assert plain["all_seeds"] == [5, 6] and plain["subseed_strength"] == 0


def test_tiling_makes_a_seamless_picture_and_says_so(server: str) -> None:
    response = post(server, "/sdapi/v1/txt2img", {"prompt": "bricks", "seed": 5, "tiling": True, **SMALL})
    assert response.status_code == 200, response.text
    assert "Tiling: True" in info_of(response)["infotexts"][0]
    plain = post(server, "/sdapi/v1/txt2img", {"prompt": "bricks", "seed": 5, "tiling": False, **SMALL})
    assert "Tiling" not in info_of(plain)["infotexts"][0]


def test_styles_are_listed_and_added_to_the_prompts(server: str) -> None:
    listed = httpx.get(server + "sdapi/v1/prompt-styles", timeout=TIMEOUT).json()
    watercolor = next(style for style in listed if style["name"] == "Watercolor")
    assert "{prompt}" in watercolor["prompt"] and watercolor["negative_prompt"]
    body = {"prompt": "a cat", "negative_prompt": "dogs", "styles": ["Watercolor"], "seed": 5, **SMALL}
    response = post(server, "/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["prompt"] == watercolor["prompt"].replace("{prompt}", "a cat")
    assert info["negative_prompt"] == f"dogs, {watercolor['negative_prompt']}"
    assert info["styles"] == ["Watercolor"]
    assert parse_parameters(info["infotexts"][0]).prompt == info["prompt"], "the prompt as it was drawn"
    unknown = post(server, "/sdapi/v1/txt2img", {**body, "styles": ["Noir"]})
    assert (
        unknown.status_code == 422 and "unknown style 'Noir'; the styles in styles.csv are: Photograph" in unknown.text
    )


def test_clip_skip_per_request_in_override_settings_never_for_everyone(server: str) -> None:
    body = {"prompt": "a cat", "seed": 5, **SMALL, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    response = post(server, "/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    wrong = post(server, "/sdapi/v1/txt2img", {**body, "override_settings": {"CLIP_stop_at_last_layers": "two"}})
    assert wrong.status_code == 422 and "CLIP_stop_at_last_layers must be a whole number" in wrong.text
    shared = post(server, "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2})
    assert shared.status_code == 422 and "send it with each generation, in override_settings" in shared.text
    assert post(server, "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1}).status_code == 200


def test_a_body_that_is_not_json_is_a_message(server: str) -> None:
    response = httpx.post(server + "sdapi/v1/txt2img", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_img2img_from_a_data_url(server: str) -> None:
    picture = Image.new("RGB", (96, 64), (200, 120, 40))
    body = {
        "prompt": "a house",
        "init_images": [b64_png(picture, data_url=True)],
        "denoising_strength": 0.5,
        "resize_mode": 1,
        "seed": 4,
        "sampler_name": "Euler",
        **SMALL,
        "width": 64,
        "height": 96,
    }
    response = post(server, "/sdapi/v1/img2img", body)
    assert response.status_code == 200, response.text
    image = decoded(response.json()["images"][0])
    assert image.size == (64, 96)
    assert "Denoising strength: 0.5" in read_metadata(image).parameters_text
    assert response.json()["parameters"]["init_images"] is None, "as A1111: not echoed unless include_init_images"
    assert post(server, "/sdapi/v1/img2img", {**body, "init_images": ["bm90IGFuIGltYWdl"]}).json()["detail"] == (
        "init_images[0] is not an image this studio can read; send a PNG, JPEG or WebP"
    )
    assert post(server, "/sdapi/v1/img2img", {**body, "resize_mode": 3}).status_code == 422


def half_mask(size: tuple[int, int]) -> Image.Image:
    """White (repaint) on the right half."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((size[0] // 2, 0, size[0], size[1]), fill=255)
    return mask


def test_a_mask_makes_img2img_an_inpaint(server: str) -> None:
    picture = Image.new("RGB", (64, 64), (30, 60, 90))
    body = {
        "prompt": "a cat",
        "init_images": [b64_png(picture)],
        "mask": b64_png(half_mask((64, 64))),
        "mask_blur": 0,
        "inpainting_fill": 1,
        "inpaint_full_res": False,
        "denoising_strength": 0.75,
        "seed": 2,
        "sampler_name": "Euler",
        **SMALL,
    }
    response = post(server, "/sdapi/v1/img2img", body)
    assert response.status_code == 200, response.text
    image = decoded(response.json()["images"][0])
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels[:, :28] == (30, 60, 90)).all(), "outside the mask: every pixel as it was"
    assert (pixels[:, 40:] != (30, 60, 90)).any(axis=-1).mean() > 0.5, "inside: repainted"
    fields = read_metadata(image).parameters.fields
    assert fields["Masked content"] == "original" and fields["Mask blur"] == "0"
    assert info_of(response)["is_using_inpainting_conditioning"] is True

    only_masked = {**body, "inpaint_full_res": True, "inpaint_full_res_padding": 8, "inpainting_fill": 0}
    only_masked["init_images"] = [b64_png(Image.new("RGB", (80, 72), (30, 60, 90)))]
    only_masked["mask"] = b64_png(half_mask((80, 72)))
    response = post(server, "/sdapi/v1/img2img", only_masked)
    image = decoded(response.json()["images"][0])
    assert image.size == (80, 72), "inpaint_full_res keeps the picture's own size, as in A1111"
    fields = read_metadata(image).parameters.fields
    assert fields["Inpaint area"] == "Only masked" and fields["Masked content"] == "fill"
    inverted = post(server, "/sdapi/v1/img2img", {**body, "inpainting_mask_invert": 1})
    pixels = np.asarray(decoded(inverted.json()["images"][0]).convert("RGB"))
    assert (pixels[:, 40:] == (30, 60, 90)).all(), "inverted: the right half is kept"
    empty = post(server, "/sdapi/v1/img2img", {**body, "mask": b64_png(Image.new("L", (64, 64), 0))})
    assert empty.status_code == 422 and "the mask is empty" in empty.json()["detail"]


def controlnet_unit(**overrides: object) -> dict[str, object]:
    """A unit as sd-webui-controlnet clients send it, with the fields the studio ignores too."""
    unit: dict[str, object] = {
        "enabled": True,
        "image": b64_png(square_picture()),
        "mask": None,
        "module": "canny",
        "model": "control_v11p_sd15_canny [d14c016b]",
        "weight": 0.8,
        "resize_mode": "Crop and Resize",
        "low_vram": False,
        "processor_res": 512,
        "threshold_a": 100,
        "threshold_b": 200,
        "guidance_start": 0.0,
        "guidance_end": 0.9,
        "control_mode": "Balanced",
        "pixel_perfect": False,
        "hr_option": "Both",
    }
    unit.update(overrides)
    return unit


def test_controlnet_through_alwayson_scripts(server: str) -> None:
    body = {"prompt": "a box", "seed": 6, "sampler_name": "Euler", **SMALL}
    body["alwayson_scripts"] = {"ControlNet": {"args": [controlnet_unit(), {"enabled": False}]}}
    response = post(server, "/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    generated, edges = (decoded(item) for item in response.json()["images"])
    assert generated.size == (64, 64)
    unit = read_metadata(generated).parameters.fields["ControlNet 0"]
    assert "Module: canny" in unit and "Weight: 0.8" in unit and "Guidance End: 0.9" in unit
    gray = np.asarray(edges.convert("L"))
    assert set(np.unique(gray).tolist()) == {0, 255}, "the edge map follows the images, as the extension does"
    assert gray[14:19, 30].max() == 255 and gray[32, 32] == 0, "the square's outline, not its inside"

    refused = {
        "module": ("openpose", "module 'openpose' is not available; choose one of: canny, none"),
        "model": ("control_v11p_sd15_openpose", "model 'control_v11p_sd15_openpose' is not available"),
        "weight": ("heavy", "alwayson_scripts.controlnet.args[0].weight: Input should be a valid number"),
    }
    for field, (value, message) in refused.items():
        body["alwayson_scripts"] = {"controlnet": {"args": [controlnet_unit(**{field: value})]}}
        answer = post(server, "/sdapi/v1/txt2img", body)
        assert answer.status_code == 422 and message in answer.json()["detail"], field


def test_controlnet_lists(server: str) -> None:
    modules = httpx.get(server + "controlnet/module_list").json()
    assert modules["module_list"] == ["canny", "none"]
    sliders = {slider["name"]: slider["value"] for slider in modules["module_detail"]["canny"]["sliders"]}
    assert sliders["Low Threshold"] == 100 and sliders["High Threshold"] == 200, "the extension's canny defaults"
    assert httpx.get(server + "controlnet/model_list").json() == {"model_list": ["tiny-controlnet"]}


def folder_sha256(folder: Path) -> str:
    """The documented hash of a diffusers folder: its weight files' bytes, in the order of their relative paths."""
    files = sorted((p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin")), key=lambda p: str(p))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def test_model_sampler_scheduler_option_and_memory_routes(server: str, tiny_model: Path) -> None:
    sha256 = folder_sha256(tiny_model)
    models = httpx.get(server + "sdapi/v1/sd-models").json()
    assert [model["title"] for model in models] == [f"tiny-sd [{sha256[:10]}]"], "A1111's title: name [short hash]"
    assert models[0]["sha256"] == sha256 and models[0]["hash"] == sha256[:10] and models[0]["model_name"] == "tiny-sd"
    assert all("/" not in str(model["filename"]) for model in models), "names, never paths"
    options = httpx.get(server + "sdapi/v1/options").json()
    assert options["sd_checkpoint_hash"] == sha256 and options["sd_model_hash"] == sha256[:10]
    samplers = {sampler["name"]: sampler["aliases"] for sampler in httpx.get(server + "sdapi/v1/samplers").json()}
    assert samplers["Euler a"] == ["k_euler_a", "k_euler_ancestral"] and "DPM++ 2M Karras" in samplers
    schedulers = httpx.get(server + "sdapi/v1/schedulers").json()
    assert [s["label"] for s in schedulers][:3] == ["Automatic", "Uniform", "Karras"] and len(schedulers) == 12
    assert options["sd_model_checkpoint"] == f"tiny-sd [{sha256[:10]}]"
    memory = httpx.get(server + "sdapi/v1/memory").json()
    assert memory["ram"]["total"] >= memory["ram"]["used"] > 0
    assert "cuda" in memory


def test_png_info_reads_ours_and_a1111s(server: str) -> None:
    made = post(server, "/sdapi/v1/txt2img", {"prompt": "a dog", "negative_prompt": "cat", "seed": 8, **SMALL})
    answer = httpx.post(server + "sdapi/v1/png-info", json={"image": made.json()["images"][0]}).json()
    assert answer["parameters"]["Prompt"] == "a dog" and answer["parameters"]["Negative prompt"] == "cat"
    assert answer["parameters"]["Seed"] == "8" and answer["info"].startswith("a dog\nNegative prompt: cat\n")
    assert "diffusion-studio" in answer["items"], "the lossless JSON record comes along"

    theirs = PngInfo()  # as A1111 1.9 writes it: the schedule apart from the sampler
    theirs.add_text("parameters", "a castle\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=theirs)
    answer = httpx.post(server + "sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert answer.json()["parameters"]["Sampler"] == "DPM++ 2M Karras"
    plain = httpx.post(server + "sdapi/v1/png-info", json={"image": b64_png(Image.new("RGB", (8, 8)))}).json()
    assert plain == {"info": "", "items": {}, "parameters": {}}


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
def test_png_info_reads_the_exif_of_a_jpeg_or_webp(server: str, image_format: str) -> None:
    text = "a harbour at dawn\nSteps: 12, Sampler: Euler a, CFG scale: 6, Seed: 31, Size: 8x8"
    buffer = io.BytesIO()
    write_image(Image.new("RGB", (8, 8)), buffer, image_format, text, {})
    answer = httpx.post(server + "sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert answer.json()["info"] == text
    assert answer.json()["parameters"]["Prompt"] == "a harbour at dawn"


def test_the_openapi_schema_describes_the_routes(server: str) -> None:
    schema = httpx.get(server + "openapi.json").json()
    for route in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/progress", "/controlnet/model_list"):
        assert route in schema["paths"], route
    assert "/config" not in schema["paths"], "Gradio's own routes are described by Gradio"
    body = schema["components"]["schemas"]["Img2ImgBody"]["properties"]
    assert {"init_images", "mask", "inpainting_fill", "denoising_strength"} <= set(body)
    page = httpx.get(server + "docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()


def test_options_switch_the_model_and_keep_the_old_one_on_failure(
    tiny_model: Path, other_tiny_model: Path, tmp_path: Path
) -> None:
    startup = tmp_path / "tiny-startup"
    shutil.copytree(tiny_model, startup)
    studio = build_studio(make_settings(startup, None))
    app = FastAPI()
    app.include_router(build_api(studio))
    client = TestClient(app)
    studio.manager.switch(str(other_tiny_model))  # as the model picker would

    def serving() -> str:
        return client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]

    def model_of(response: httpx.Response) -> str:
        return parse_parameters(info_of(response)["infotexts"][0]).fields["Model"]

    def listed() -> list[str]:
        return [m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()]

    body = {"prompt": "a cat", "seed": 1, **SMALL}
    assert listed() == ["tiny-startup", "tiny-sd-other"]
    assert serving().startswith("tiny-sd-other [")
    once = client.post("/sdapi/v1/txt2img", json={**body, "override_settings": {"sd_model_checkpoint": "tiny-startup"}})
    assert model_of(once) == "tiny-startup" and serving().startswith("tiny-sd-other"), "this request only"

    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-startup [0123abcd]"}).status_code == 200
    assert (
        serving().startswith("tiny-startup [")
        and model_of(client.post("/sdapi/v1/txt2img", json=body)) == "tiny-startup"
    )
    unknown = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "someone/else"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("'someone/else' is not one of this studio's models (tiny-startup, ")

    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd-other"}).status_code == 200
    shutil.rmtree(startup)  # the start-up model is gone from the disk: switching to it fails
    failed = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-startup"})
    assert failed.status_code == 503 and "'tiny-startup'" in failed.json()["detail"]
    assert str(tmp_path) not in failed.text, "the model is named, its path is not"
    assert (
        serving().startswith("tiny-sd-other")
        and model_of(client.post("/sdapi/v1/txt2img", json=body)) == "tiny-sd-other"
    )
    assert listed() == ["tiny-sd-other"], "a model that failed to load is no longer offered"


def test_no_api_serves_none_of_it(tiny_model: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None, api=False))
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{studio.settings.port}/"
        for route in ("sdapi/v1/samplers", "controlnet/model_list", "openapi.json", "docs"):
            assert httpx.get(url + route).status_code == 404, route
        assert httpx.post(url + "sdapi/v1/txt2img", json={"prompt": "x"}).status_code in (404, 405)
        assert httpx.get(url).status_code == 200, "the page is served as ever"
    finally:
        demo.close()


def test_the_page_s_defences_cover_the_rest_routes(server: str, served_studio: Studio) -> None:
    assert httpx.get(server + "sdapi/v1/samplers", headers={"Host": "evil.example"}).status_code == 400, "rebinding"
    cross_site = httpx.get(server + "sdapi/v1/options", headers={"Origin": "https://evil.example"})
    assert cross_site.headers.get("access-control-allow-origin") is None, "no other site's page may read it"
    limit = served_studio.settings.max_upload_mb * 2**20
    huge = httpx.post(server + "sdapi/v1/img2img", json={"init_images": ["A" * (limit + 10)]}, timeout=TIMEOUT)
    assert huge.status_code == 413 and "--max-upload-mb" in huge.text
    bomb = base64.b64encode(png_header_only(10_000, 10_000)).decode()
    answer = post(server, "/sdapi/v1/img2img", {"prompt": "x", "init_images": [bomb], **SMALL})
    assert answer.status_code == 422 and "10000x10000, 100 megapixels" in answer.json()["detail"]
