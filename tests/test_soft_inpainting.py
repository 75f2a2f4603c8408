"""Soft inpainting (A1111 1.8): its settings as A1111's script takes them and writes them, and what it does to a
picture, on the micro model (whose flat-coloured scenes show a seam plainly)."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio import images
from studio.api.mapping import ServerFacts, img2img_job, txt2img_job
from studio.api.schemas import Img2ImgBody, Txt2ImgBody
from studio.api.scripts import script_info, scripts_list
from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.metadata import ImageMetadata, parse_parameters
from studio.micro.scenes import PALETTE
from studio.pnginfo import SentSettings, settings_from_metadata
from studio.requests import InpaintRequest
from studio.settings import Settings
from studio.soft_inpainting import SoftInpainting, from_script_args
from studio.validation import Limits
from tests.a1111_helpers import b64_png, info_of

SCRIPT = "soft inpainting"


# --- A1111's script arguments and parameters text ---------------------------------------------------------------


def test_script_arguments_in_a1111s_order() -> None:
    assert from_script_args([True, 1.5, 0.7, 6, 0, 0.5, 2]) == SoftInpainting(1.5, 0.7, 6.0)
    assert from_script_args([True]) == SoftInpainting(1.0, 0.5, 4.0), "A1111's defaults for what is left out"
    assert from_script_args([False, 1.5, 0.7, 6]) is None
    assert from_script_args([]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([True, 9, 0.5, 4], "soft inpainting schedule bias must be between 0 and 8, got 9"),
        ([True, 1, 0.5, 0.5], "soft inpainting transition contrast boost must be between 1 and 32, got 0.5"),
        ([True, "high", 0.5, 4], "args[1] (schedule bias) must be a number, got 'high'"),
        ([True, 1, 0.5, 4, 0.3], "args[4] (mask influence) must be 0 here"),
        (["yes"], "args[0] (enabled) must be true or false, got 'yes'"),
    ],
)
def test_bad_script_arguments_are_named(args: list[object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        from_script_args(args)


def test_script_info_lists_a1111s_seven_arguments_in_order() -> None:
    info = next(entry for entry in script_info() if entry["name"] == "soft inpainting")
    assert scripts_list()["img2img"] == ["soft inpainting"]
    assert info["name"] == "soft inpainting" and info["is_alwayson"] and info["is_img2img"]
    labels = [arg["label"] for arg in info["args"]]
    assert labels == [
        "Soft inpainting",
        "Schedule bias",
        "Preservation strength",
        "Transition contrast boost",
        "Mask influence",
        "Difference threshold",
        "Difference contrast",
    ]
    assert [arg["value"] for arg in info["args"]] == [False, 1.0, 0.5, 4.0, 0.0, 0.5, 2.0]
    assert from_script_args([True, *(arg["value"] for arg in info["args"][1:])]) == SoftInpainting()


def sent_by(text: str) -> SentSettings | None:
    return settings_from_metadata(ImageMetadata(text, parse_parameters(text), None), max_steps=150, max_side=1024)


def test_parameters_text_is_read_back() -> None:
    text = (
        "a cat\nSteps: 20, Sampler: Euler, Schedule type: Exponential, CFG scale: 7, Seed: 1, Size: 64x64, "
        "Denoising strength: 0.75, Mask blur: 8, Soft inpainting enabled: True, Soft inpainting schedule bias: 1.5, "
        "Soft inpainting preservation strength: 0.7, Soft inpainting transition contrast boost: 6"
    )
    sent = sent_by(text)
    assert sent is not None
    assert sent.soft_inpainting == SoftInpainting(1.5, 0.7, 6.0)
    assert (sent.sampler, sent.scheduler) == ("Euler", "Exponential")
    plain = sent_by(text.split(", Soft")[0])
    assert plain is not None and plain.soft_inpainting is None


FACTS = ServerFacts(limits=Limits(), max_upload_megapixels=16, controlnet_name="canny")


def test_alwayson_scripts_turn_it_on_for_img2img_with_a_mask_only() -> None:
    picture, mask = b64_png(Image.new("RGB", (64, 64), "blue")), b64_png(Image.new("L", (64, 64), 255))
    body = {"init_images": [picture], "mask": mask, "width": 64, "height": 64, "prompt": "a cat"}
    scripts = {"alwayson_scripts": {"Soft Inpainting": {"args": [True, 1, 0.5, 4, 0, 0.5, 2]}}}
    job = img2img_job(Img2ImgBody.model_validate({**body, **scripts}), FACTS)
    assert isinstance(job.request, InpaintRequest) and job.request.soft_inpainting == SoftInpainting()
    off = {"alwayson_scripts": {SCRIPT: {"args": [False, 1, 0.5, 4, 0, 0.5, 2]}}}
    assert img2img_job(Img2ImgBody.model_validate({**body, **off}), FACTS).request.soft_inpainting is None  # type: ignore[union-attr]
    unmasked = {key: value for key, value in body.items() if key != "mask"}
    for wrong in (
        lambda: img2img_job(Img2ImgBody.model_validate({**unmasked, **scripts}), FACTS),
        lambda: txt2img_job(Txt2ImgBody.model_validate({"prompt": "a cat", **scripts}), FACTS),
    ):
        with pytest.raises(InvalidRequest, match="soft inpainting repaints a masked picture: send it with an img2img"):
            wrong()


# --- What it does to a picture ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def micro() -> Studio:
    return build_studio(Settings(model="micro", device="cpu", outputs=None))


def test_soft_inpainting_keeps_far_pixels_and_softens_the_seam(micro: Studio) -> None:
    """A blue picture whose right half is repainted red: outside the blurred mask nothing changes, and the largest
    jump between neighbouring columns across the edge is smaller with soft inpainting than with hard."""
    source = Image.new("RGB", (64, 64), PALETTE["blue"])
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((32, 0, 63, 63), fill=255)
    outside = np.asarray(images.blur(mask, 8)) == 0
    assert outside[:, :8].all()

    def seam(soft: SoftInpainting | None, seed: int) -> float:
        request = InpaintRequest(
            source, mask, "a red background", mask_blur=8, strength=1.0, seed=seed, num_inference_steps=12,
            soft_inpainting=soft,
        )  # fmt: skip
        result = micro.service.inpaint(request).images[0]
        out = np.asarray(result.image.convert("RGB")).astype(float)
        assert np.array_equal(out[outside], np.asarray(source).astype(float)[outside]), "far pixels are unchanged"
        if soft is not None:
            assert "Soft inpainting enabled: True, Soft inpainting schedule bias: 1" in result.parameters
        # The edge's steepest step: the column-to-column change, averaged down each column, near the mask's edge.
        return float(np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))[24:40].max())

    seeds = range(3)
    hard = [seam(None, seed) for seed in seeds]
    soft = [seam(SoftInpainting(), seed) for seed in seeds]
    # Measured: hard 15.8, 16.9, 13.4 (mean 15.4); soft 8.8, 9.6, 13.8 (mean 10.7). The micro model draws flat
    # shapes with sharp edges of its own, so single seeds vary; the mean does not.
    assert np.mean(soft) < 0.9 * np.mean(hard), (hard, soft)


def test_the_a1111_api_takes_it_and_writes_it(server: str) -> None:
    picture = Image.new("RGB", (64, 64), (30, 60, 90))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 56, 56), fill=255)
    body = {
        "init_images": [b64_png(picture)], "mask": b64_png(mask), "prompt": "a cat", "steps": 3, "width": 64,
        "height": 64, "seed": 4, "mask_blur": 8, "sampler_name": "Euler", "scheduler": "normal",
        "alwayson_scripts": {SCRIPT: {"args": [True, 2, 0.5, 4, 0, 0.5, 2]}},
    }  # fmt: skip
    response = httpx.post(server + "sdapi/v1/img2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    text = info_of(response)["infotexts"][0]
    assert "Sampler: Euler, Schedule type: Normal, CFG scale" in text
    assert "Soft inpainting enabled: True, Soft inpainting schedule bias: 2," in text
    refused = httpx.post(
        server + "sdapi/v1/img2img",
        json={**body, "alwayson_scripts": {SCRIPT: {"args": [True, 1, 0.5, 4, 0.5]}}},
        timeout=60,
    )
    assert refused.status_code == 422 and "args[4] (mask influence) must be 0 here" in refused.text
