"""Generation through the service: seeds that reproduce, progress, Stop, metadata, saved files, NaN recovery."""

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.composition import Studio, build_studio
from studio.errors import Cancelled, InvalidRequest, ModelLoadError
from studio.metadata import read_metadata
from studio.model_hash import sha256_of, short_hash
from studio.requests import Txt2ImgRequest
from studio.vae_decode import UPCAST_NOTE
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def test_same_seed_same_pixels(studio: Studio) -> None:
    request = Txt2ImgRequest(prompt="a red house", seed=1234, **SMALL)
    first = studio.service.txt2img(request)
    second = studio.service.txt2img(request)
    assert first.seeds == second.seeds == (1234,)
    assert np.array_equal(pixels(first.images[0].image), pixels(second.images[0].image))
    other = studio.service.txt2img(Txt2ImgRequest(prompt="a red house", seed=1235, **SMALL))
    assert mean_abs_diff(first.images[0].image, other.images[0].image) > 1.0, "another seed gives another image"


@pytest.mark.parametrize("sampler", ["DPM++ 2M Karras", "Euler a", "DPM++ SDE Karras"])
def test_image_of_a_batch_reproduces_alone(studio: Studio, sampler: str) -> None:
    batch = studio.service.txt2img(
        Txt2ImgRequest(prompt="a blue sky", sampler=sampler, seed=500, batch_size=3, **SMALL)
    )
    assert batch.seeds == (500, 501, 502)
    alone = studio.service.txt2img(Txt2ImgRequest(prompt="a blue sky", sampler=sampler, seed=501, **SMALL))
    assert mean_abs_diff(batch.images[1].image, alone.images[0].image) < 1.0
    assert mean_abs_diff(batch.images[0].image, batch.images[1].image) > 1.0, "each image has its own noise"


def test_random_seed_is_reported(studio: Studio) -> None:
    result = studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=-1, batch_size=2, **SMALL))
    assert result.request.seed == result.seeds[0] >= 0
    assert result.seeds[1] == result.seeds[0] + 1
    again = studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=result.seeds[0], **SMALL))
    assert mean_abs_diff(result.images[0].image, again.images[0].image) < 1.0


def test_progress_is_reported_every_step(studio: Studio) -> None:
    steps: list[tuple[int, int]] = []
    studio.service.txt2img(
        Txt2ImgRequest(prompt="a tree", seed=1, width=64, height=64, num_inference_steps=5),
        progress=lambda done, total: steps.append((done, total)),
    )
    assert steps == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_stop_interrupts_at_the_next_step_and_returns_nothing(studio: Studio) -> None:
    cancel = threading.Event()
    unet_calls = 0
    unet = studio.manager.current().pipeline.unet
    original_forward = unet.forward

    def counting_forward(*args: object, **kwargs: object) -> object:
        nonlocal unet_calls
        unet_calls += 1
        return original_forward(*args, **kwargs)

    def press_stop_after_two_steps(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    unet.forward = counting_forward
    try:
        with pytest.raises(Cancelled, match="Stopped"):
            studio.service.txt2img(
                Txt2ImgRequest(prompt="a dog", seed=1, width=64, height=64, num_inference_steps=10),
                progress=press_stop_after_two_steps,
                cancel=cancel,
            )
    finally:
        del unet.forward
    assert unet_calls == 2, "no denoising step ran after Stop"
    assert not list((studio.settings.outputs or Path("/nonexistent")).rglob("*.png")), "nothing was saved"


def test_images_carry_and_save_their_metadata(studio: Studio) -> None:
    result = studio.service.txt2img(
        Txt2ImgRequest(
            prompt="a green forest",
            negative_prompt="blurry",
            sampler="Euler",
            guidance_scale=6.5,
            seed=77,
            batch_size=2,
            **SMALL,
        )
    )
    second = result.images[1]
    short = short_hash(sha256_of(studio.manager.source))
    assert short is not None and len(short) == 10
    assert second.parameters == (
        "a green forest\nNegative prompt: blurry\n"
        f"Steps: 4, Sampler: Euler, CFG scale: 6.5, Seed: 78, Size: 64x64, Model hash: {short}, Model: tiny-sd, "
        "Version: Diffusion Studio 0.1.0"
    )
    assert second.path is not None
    assert second.path.name.endswith("-78.png")
    with Image.open(second.path) as saved:
        assert saved.format == "PNG"
        meta = read_metadata(saved)
        assert np.array_equal(pixels(saved), pixels(second.image)), "saved losslessly"
    assert meta.parameters_text == second.parameters
    assert meta.record is not None
    assert meta.record["seed"] == 78
    assert meta.record["batch_index"] == 1
    assert meta.record["request"]["guidance_scale"] == 6.5
    assert meta.record["request"]["prompt"] == "a green forest"
    assert read_metadata(second.image).parameters_text == second.parameters, "returned images carry it too"


def test_no_save_keeps_nothing(tiny_model: Path, tmp_path: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None))
    result = studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=1, **SMALL))
    assert result.images[0].path is None
    assert read_metadata(result.images[0].image).parameters_text


def test_invalid_request_is_refused_before_the_model_loads(studio: Studio) -> None:
    with pytest.raises(InvalidRequest, match="width must be a multiple of 8"):
        studio.service.txt2img(Txt2ImgRequest(prompt="a cat", width=100, height=64))
    assert studio.manager.loaded is None


def test_missing_model_is_a_message_not_a_crash(tmp_path: Path) -> None:
    studio = build_studio(make_settings(tmp_path / "not-here", tmp_path))
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=1, **SMALL))


def test_nan_from_a_half_precision_vae_is_decoded_again_in_float32(tiny_model: Path, tmp_path: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None, dtype="bfloat16"))
    vae = studio.manager.current().pipeline.vae
    original_decode = vae.decode
    dtypes_seen: list[torch.dtype] = []

    def overflowing_decode(latents: torch.Tensor, *args: object, **kwargs: object) -> object:
        dtypes_seen.append(vae.dtype)
        output = original_decode(latents, *args, **kwargs)
        if vae.dtype != torch.float32:  # as a float16 VAE overflows
            output[0].fill_(float("nan"))
        return output

    vae.decode = overflowing_decode
    try:
        result = studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=3, **SMALL))
    finally:
        del vae.decode
    assert dtypes_seen == [torch.bfloat16, torch.float32]
    assert result.notes == (UPCAST_NOTE.format(dtype="bfloat16"),)
    assert pixels(result.images[0].image).std() > 0, "a real picture, not a black square"
    assert vae.dtype == torch.bfloat16, "the shared VAE is back in its dtype"


def test_sdxl_models_load_and_generate(tmp_path: Path) -> None:
    model = save_tiny_sdxl_model(tmp_path / "tiny-sdxl")
    studio = build_studio(make_settings(model, None))
    assert studio.manager.current().family == "SDXL"
    request = Txt2ImgRequest(prompt="a cat", negative_prompt="blurry", seed=8, batch_size=2, **SMALL)
    first = studio.service.txt2img(request)
    again = studio.service.txt2img(replace(request, seed=9, batch_size=1))
    assert first.images[0].image.size == (64, 64)
    assert mean_abs_diff(first.images[1].image, again.images[0].image) < 1.0
