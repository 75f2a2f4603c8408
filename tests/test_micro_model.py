"""Tests that check meaning, on the committed micro model (assets/micro) through the studio's own service:
the prompt's colours land where it says, inpainting turns the masked region toward the prompt and keeps the
rest, and the ControlNet makes the picture follow a drawn circle's edges. The detector reads the pictures."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio import images
from studio.composition import Studio, build_studio
from studio.micro.detect import colour_labels, detect, edge_f1, edge_map
from studio.micro.scenes import COLOURS, PALETTE
from studio.requests import ControlNetRequest, InpaintRequest, Txt2ImgRequest
from studio.settings import Settings

STEPS = {"num_inference_steps": 20, "guidance_scale": 7.0}
"""The studio's defaults at the step count the model card's figures use."""


@pytest.fixture(scope="module")
def micro() -> Studio:
    return build_studio(Settings(model="micro", device="cpu", outputs=None))


@pytest.mark.parametrize(
    ("prompt", "background", "foreground", "seed"),
    [
        ("a red circle on a blue background", "blue", {"red"}, 1),
        ("a yellow square on a black background", "black", {"yellow"}, 2),
        ("a white star and a green triangle on a purple background", "purple", {"white", "green"}, 3),
    ],
)
def test_the_prompts_colours_appear_where_it_says(
    micro: Studio, prompt: str, background: str, foreground: set[str], seed: int
) -> None:
    image = micro.service.txt2img(Txt2ImgRequest(prompt, width=64, height=64, seed=seed, **STEPS)).images[0].image
    found = detect(image)
    assert found.background == background, f"{prompt!r}: background read as {found.background}"
    assert foreground <= found.colours, f"{prompt!r}: shapes read as {found.colours}"
    border = np.concatenate([colour_labels(image)[0], colour_labels(image)[-1]])
    assert (border == COLOURS.index(background)).mean() > 0.8, "the background is the named colour at the edges"


def blue_scene_with_red_circle() -> Image.Image:
    image = Image.new("RGB", (64, 64), PALETTE["blue"])
    ImageDraw.Draw(image).ellipse((38, 22, 58, 42), fill=PALETTE["red"])
    return image


def test_inpaint_turns_the_masked_region_green_and_keeps_the_rest(micro: Studio) -> None:
    source = blue_scene_with_red_circle()
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((6, 18, 32, 44), fill=255)
    request = InpaintRequest(
        source, mask, "a green square and a red circle on a blue background", strength=1.0, mask_blur=2, seed=4, **STEPS
    )
    result = micro.service.inpaint(request).images[0].image
    inside = np.asarray(mask) > 0
    green = COLOURS.index("green")
    assert (colour_labels(source)[inside] == green).mean() == 0
    assert (colour_labels(result)[inside] == green).mean() > 0.3, "the masked region turned green"
    outside = np.asarray(images.blur(mask, 2)) == 0
    assert np.array_equal(np.asarray(result)[outside], np.asarray(source)[outside]), "the rest is kept"
    assert ("red", "circle") in {(blob.colour, blob.shape) for blob in detect(result).blobs}


def drawn_circle() -> Image.Image:
    """A circle as someone might draw it to guide the picture: filled, off-centre, in colours unlike the prompt's."""
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((14, 10, 50, 46), fill="orange")
    return image


def test_controlnet_follows_a_drawn_circles_edges_better_than_the_prompt_alone(micro: Studio) -> None:
    prompt = "a purple circle on a yellow background"
    control = edge_map(drawn_circle())
    with_control, without = [], []
    for seed in (5, 6):
        guided = micro.service.controlnet(ControlNetRequest(drawn_circle(), prompt, seed=seed, **STEPS))
        assert guided.control_image is not None
        assert np.array_equal(np.asarray(guided.control_image.image.convert("L")) > 0, control)
        alone = micro.service.txt2img(Txt2ImgRequest(prompt, width=64, height=64, seed=seed, **STEPS))
        with_control.append(edge_f1(edge_map(guided.images[0].image), control))
        without.append(edge_f1(edge_map(alone.images[0].image), control))
    assert np.mean(with_control) > np.mean(without) + 0.2, (with_control, without)
