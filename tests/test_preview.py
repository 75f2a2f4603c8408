"""Live previews: shown every N steps, cheap by default, and never changing the result."""

from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from studio.composition import Studio, build_studio
from studio.preview import approximate
from studio.requests import Txt2ImgRequest
from tests.conftest import make_settings

REQUEST = Txt2ImgRequest("a red house", width=64, height=64, num_inference_steps=12, seed=3)


@pytest.mark.parametrize("mode", ["approx", "vae"])
def test_previews_every_n_steps_leave_the_result_unchanged(tiny_model: Path, mode: str) -> None:
    studio = build_studio(make_settings(tiny_model, None, preview_every=5, preview_mode=mode))
    previews: list[Image.Image] = []
    with_previews = studio.service.txt2img(REQUEST, preview=previews.append)
    without = studio.service.txt2img(REQUEST)
    assert len(previews) == 2, "after steps 5 and 10 of 12 (the last step shows the result itself)"
    assert all(image.size == (64, 64) for image in previews)
    assert np.array_equal(np.asarray(with_previews.images[0].image), np.asarray(without.images[0].image))


def test_previews_off_cost_nothing(studio: Studio, tiny_model: Path) -> None:
    off = build_studio(make_settings(tiny_model, None, preview_every=0))
    previews: list[Image.Image] = []
    off.service.txt2img(REQUEST, preview=previews.append)
    assert previews == []


def test_the_approximation_maps_latents_to_colours() -> None:
    import torch

    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 0] = 3.0  # the first channel carries brightness in all three colours
    image = approximate(latents, sdxl=False, size=(64, 64))
    assert image.size == (64, 64)
    red, green, blue = image.getpixel((32, 32))
    assert min(red, green, blue) > 200
    assert approximate(torch.zeros(1, 4, 8, 8), sdxl=False, size=(8, 8)).getpixel((0, 0)) == (127, 127, 127)


def test_the_tab_streams_previews_then_the_result(server: str) -> None:
    job = Client(server, verbose=False).submit(
        prompt="a red house", negative_prompt="", sampler="Euler", steps=12, guidance_scale=7, width=64, height=64,
        seed=3, batch_size=1, api_name="/txt2img",
    )  # fmt: skip
    final = job.result(timeout=120)
    outputs = job.outputs()
    assert len(outputs) == 3, "two previews, then the result"
    assert [item["caption"] for item in outputs[0][0]] == ["Preview"]
    assert [item["caption"] for item in final[0]] == ["Seed 3"]
