"""Tiling (A1111's): pictures that repeat without a seam, because every convolution wraps around for the job.

The proof that a picture wraps around: with tiling the model treats it as a torus, so starting from the same noise
shifted (by a whole number of the UNet's downsampling steps) gives the same picture shifted, pixel for pixel. Zero
padding breaks that at the edges; circular padding keeps it.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.metadata import parse_parameters
from studio.model_manager import Task
from studio.pnginfo import settings_from_metadata
from studio.requests import ControlNetRequest, Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from studio.tiling import padded_convolutions, tiled
from studio.ui.pnginfo import read_file
from tests.conftest import SMALL


def shifted_pictures(studio: Studio, tiling: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The same start noise and its copy rolled by a whole UNet downsampling step, through the real pipeline;
    returns both pictures and the roll in pixels."""
    with studio.manager.job(Task.TXT2IMG, "Euler", [0], ()) as job:
        pipe = job.pipeline
        step = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        call = {"prompt": "a red house", "num_inference_steps": 3, "width": 64, "height": 64, "output_type": "np"}
        with tiled(pipe, tiling):
            first = pipe(latents=latents, **call).images[0]
            second = pipe(latents=latents.roll((step, step), dims=(2, 3)), **call).images[0]
    pixels = step * pipe.vae_scale_factor
    return first, second, pixels


def test_a_tiled_picture_wraps_around_its_edges(studio: Studio) -> None:
    first, second, pixels = shifted_pictures(studio, tiling=True)
    assert np.abs(np.roll(first, (pixels, pixels), axis=(0, 1)) - second).max() < 1e-4
    first, second, pixels = shifted_pictures(studio, tiling=False)
    assert np.abs(np.roll(first, (pixels, pixels), axis=(0, 1)) - second).max() > 0.05, "zero padding has edges"


def test_tiling_lasts_for_the_job_only(studio: Studio) -> None:
    """The shared modules pad circularly while the job runs (seen from its progress reports) and with zeros after."""
    modes: set[str] = set()

    def progress(_done: int, _total: int) -> None:
        modes.update(layer.padding_mode for layer in padded_convolutions(studio.manager.current().pipeline))

    request = Txt2ImgRequest(prompt="a red house", seed=4, tiling=True, **SMALL)
    made = studio.service.txt2img(request, progress=progress)
    assert modes == {"circular"}
    after = {layer.padding_mode for layer in padded_convolutions(studio.manager.current().pipeline)}
    assert after == {"zeros"}, "every other request gets the plain model back"
    assert "Tiling: True" in made.images[0].parameters
    plain = studio.service.txt2img(Txt2ImgRequest(prompt="a red house", seed=4, **SMALL))
    assert "Tiling" not in plain.images[0].parameters
    assert not np.array_equal(np.asarray(made.images[0].image), np.asarray(plain.images[0].image))


def test_tiling_is_undone_when_a_job_fails(studio: Studio) -> None:
    def progress(_done: int, _total: int) -> None:
        raise RuntimeError("a failure in the middle of a job")

    with pytest.raises(RuntimeError):
        studio.service.txt2img(Txt2ImgRequest(prompt="x", seed=4, tiling=True, **SMALL), progress=progress)
    assert {layer.padding_mode for layer in padded_convolutions(studio.manager.current().pipeline)} == {"zeros"}


def test_every_task_and_the_controlnet_tile(studio: Studio) -> None:
    picture = Image.new("RGB", (64, 64), (120, 90, 60))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    common = {"prompt": "bricks", "seed": 2, "tiling": True, "num_inference_steps": 4}
    requests = {
        "img2img": (studio.service.img2img, Img2ImgRequest(image=picture, width=64, height=64, **common)),
        "inpaint": (studio.service.inpaint, InpaintRequest(image=picture, mask_image=mask, **common)),
        "controlnet": (studio.service.controlnet, ControlNetRequest(image=picture, **common)),
    }
    for task, (run, request) in requests.items():
        seen: list[bool] = []

        def progress(_done: int, _total: int, seen: list[bool] = seen) -> None:
            layers = padded_convolutions(studio.manager.current().pipeline)
            seen.append(all(layer.padding_mode == "circular" for layer in layers))

        made = run(request, progress=progress)  # type: ignore[operator]
        assert seen and all(seen), task
        assert parse_parameters(made.images[0].parameters).fields["Tiling"] == "True", task


def test_the_controlnets_convolutions_wrap_too(studio: Studio) -> None:
    edges = Image.new("RGB", (64, 64), "black")
    edges.paste((255, 255, 255), (20, 20, 44, 44))
    with studio.manager.job(Task.CONTROLNET, "Euler", [0], ()) as job:
        controlnet_layers = [layer for layer in job.pipeline.controlnet.modules() if isinstance(layer, torch.nn.Conv2d)]
        with tiled(job.pipeline):
            assert {layer.padding_mode for layer in controlnet_layers if any(layer.padding)} == {"circular"}
        assert {layer.padding_mode for layer in controlnet_layers} == {"zeros"}


def test_tiling_must_be_a_switch_and_png_info_reads_it(studio: Studio) -> None:
    with pytest.raises(InvalidRequest, match="tiling must be true or false, got 'yes'"):
        studio.service.txt2img(Txt2ImgRequest(prompt="x", tiling="yes", **SMALL))  # type: ignore[arg-type]
    made = studio.service.txt2img(Txt2ImgRequest(prompt="x", seed=1, tiling=True, **SMALL))
    path = made.images[0].path
    assert isinstance(path, Path)
    sent = settings_from_metadata(read_file(str(path)), max_steps=150, max_side=1024)
    assert sent is not None and sent.tiling is True
