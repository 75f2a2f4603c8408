"""Variation seeds and "Resize seed from" (A1111's): the starting noise moved towards another seed's, and built
around the seed's noise at another size, in every generation task.

The checks that hold for each task: a tiny strength gives the seed's own picture (the variation changes the noise
where it is drawn and no other random draw, so an ancestral sampler's noise stays the seed's); a larger strength
moves further from it; image *i* of a batch keeps the seed, gets variation seed ``subseed + i`` and comes out the
same made alone; the parameters text says so and PNG Info reads it back.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.metadata import parse_parameters
from studio.pnginfo import settings_from_metadata
from studio.requests import CompareRequest, ControlNetRequest, Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from studio.ui.pnginfo import read_file
from studio.ui.results import present
from studio.ui.variation import variation_seed_of
from studio.variation import Variation, centred, slerp
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model

TINY = 1e-6
"""A strength that moves the noise by about a millionth: the picture must be the seed's own."""


def pixels(result: object, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index].image, dtype=np.float64)  # type: ignore[attr-defined]


def distance(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first - second).mean())


def test_slerp_goes_from_one_noise_to_the_other_keeping_its_scale() -> None:
    start = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    end = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(slerp(0.0, start, end), start, atol=1e-6)
    assert torch.allclose(slerp(1.0, start, end), end, atol=1e-5)
    middle = slerp(0.5, start, end)
    norms = middle.flatten(1).norm(dim=1)
    ends = (start.flatten(1).norm(dim=1) + end.flatten(1).norm(dim=1)) / 2
    assert torch.allclose(norms, ends, rtol=0.03), "noise of the scale the model expects"
    assert float(((start + end) / 2).flatten(1).norm(dim=1).max()) < 0.8 * float(ends.min()), "a plain mix shrinks"
    alone = slerp(0.5, start[1:], end[1:])
    assert torch.allclose(middle[1:], alone, atol=1e-6), "each image on its own"
    assert torch.allclose(slerp(0.3, start, start), start, atol=1e-6), "parallel noises: no division by zero"


def test_a_variation_draws_its_noise_from_each_variation_seed() -> None:
    noise = torch.zeros(2, 4, 8, 8)
    varied = Variation(subseeds=(7, 8), strength=1.0).vary(noise + 1, 8)
    seven = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(varied[0], seven, atol=1e-5)
    with pytest.raises(ValueError, match="2 noises for 1 variation seeds"):
        Variation(subseeds=(7,), strength=0.5).vary(noise, 8)


def test_resizing_the_seed_puts_the_seeds_noise_at_that_size_in_the_middle() -> None:
    outer = torch.zeros(1, 2, 6, 4)
    inner = torch.ones(1, 2, 2, 2)
    placed = centred(inner, outer)
    assert placed[..., 2:4, 1:3].eq(1).all() and placed.sum() == inner.sum(), "the middle, the rest untouched"
    larger = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(centred(larger, torch.zeros(1, 1, 2, 4)), larger[..., 2:4, 1:5]), "cropped to its middle"

    noise = torch.randn(1, 4, 16, 8, generator=torch.Generator().manual_seed(0))
    resized = Variation(subseeds=(9,), strength=0.0, seeds=(5,), resize_from=(64, 64)).vary(noise, 8)
    seed_at_64 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(resized[..., 4:12, :], seed_at_64), "a 64x128 picture: the seed's 64x64 noise in the middle"
    assert torch.equal(resized[..., :4, :], noise[..., :4, :]) and torch.equal(resized[..., 12:, :], noise[..., 12:, :])
    both = Variation(subseeds=(9,), strength=0.5, seeds=(5,), resize_from=(64, 64)).vary(noise, 8)
    nine_at_64 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(both[..., 4:12, :], slerp(0.5, seed_at_64, nine_at_64)), "varied at the smaller size"


def txt2img(studio: Studio, **changes: object) -> object:
    values: dict[str, object] = {"prompt": "a red house", "sampler": "Euler", "seed": 5, **SMALL, **changes}
    return studio.service.txt2img(Txt2ImgRequest(**values))  # type: ignore[arg-type]


def test_text_to_image_moves_from_the_seed_to_the_variation_seed(studio: Studio) -> None:
    plain, other = pixels(txt2img(studio)), pixels(txt2img(studio, seed=9))
    assert distance(plain, other) > 10
    assert distance(pixels(txt2img(studio, subseed=9, subseed_strength=TINY)), plain) < 0.5
    near = distance(pixels(txt2img(studio, subseed=9, subseed_strength=0.2)), plain)
    far = distance(pixels(txt2img(studio, subseed=9, subseed_strength=0.8)), plain)
    assert 0.5 < near < far
    assert distance(pixels(txt2img(studio, subseed=9, subseed_strength=1.0)), other) < 0.5, "all the way: seed 9's"


def test_an_ancestral_sampler_keeps_drawing_the_seeds_noise(studio: Studio) -> None:
    """'Euler a' draws noise at every step from the seed's generator; a variation must leave that noise alone."""
    plain = pixels(txt2img(studio, sampler="Euler a"))
    assert distance(pixels(txt2img(studio, sampler="Euler a", subseed=9, subseed_strength=TINY)), plain) < 0.5


def test_a_batch_keeps_the_seed_and_counts_up_the_variation_seed(studio: Studio) -> None:
    batch = txt2img(studio, batch_size=2, subseed=40, subseed_strength=0.5)
    assert batch.seeds == (5, 5)  # type: ignore[attr-defined]
    assert [item.subseed for item in batch.images] == [40, 41]  # type: ignore[attr-defined]
    fields = parse_parameters(batch.images[1].parameters).fields  # type: ignore[attr-defined]
    assert (fields["Seed"], fields["Variation seed"], fields["Variation seed strength"]) == ("5", "41", "0.5")
    alone = txt2img(studio, subseed=41, subseed_strength=0.5)
    assert distance(pixels(batch, 1), pixels(alone)) < 0.5, "image 1 of the batch, made alone (batched arithmetic)"
    assert distance(pixels(batch, 0), pixels(batch, 1)) > 0.5, "each image its own variation"
    gallery, seeds, *_ = present(batch)  # type: ignore[arg-type]
    assert [caption for _, caption in gallery] == ["Seed 5, variation 40", "Seed 5, variation 41"]
    assert seeds == "5, 5; variation seeds 40, 41"
    assert variation_seed_of(batch.images[1].parameters) == 41  # type: ignore[attr-defined]
    plain = txt2img(studio, batch_size=2)
    assert "Variation" not in plain.images[0].parameters and plain.seeds == (5, 6)  # type: ignore[attr-defined]
    assert variation_seed_of(plain.images[0].parameters) is None  # type: ignore[attr-defined]


def test_a_random_variation_seed_is_drawn_and_written(studio: Studio) -> None:
    made = txt2img(studio, subseed_strength=0.3)
    subseed = made.images[0].subseed  # type: ignore[attr-defined]
    assert subseed is not None and subseed >= 0
    assert f"Variation seed: {subseed}, Variation seed strength: 0.3" in made.images[0].parameters  # type: ignore[attr-defined]
    assert np.array_equal(pixels(made), pixels(txt2img(studio, subseed=subseed, subseed_strength=0.3)))


def test_a_picture_made_larger_keeps_its_middle_when_resized_from_its_size(studio: Studio) -> None:
    """A1111's "Resize seed from": a 64x64 picture redone at 128x64 from the same seed is another picture, but
    resized from 64x64 its middle stays the small picture's; at the picture's own size nothing changes."""
    small = pixels(txt2img(studio))
    assert np.array_equal(pixels(txt2img(studio, seed_resize_from_w=64, seed_resize_from_h=64)), small)
    wide = pixels(txt2img(studio, width=128))
    resized = txt2img(studio, width=128, seed_resize_from_w=64, seed_resize_from_h=64)
    kept, lost = distance(pixels(resized)[:, 32:96], small), distance(wide[:, 32:96], small)
    assert kept < lost / 4, (kept, lost)
    parameters = resized.images[0].parameters  # type: ignore[attr-defined]
    assert "Seed resize from: 64x64" in parameters and "Variation seed" not in parameters
    assert "Seed resize from" not in txt2img(studio).images[0].parameters  # type: ignore[attr-defined]
    sent = settings_from_metadata(read_file(str(resized.images[0].path)), max_steps=150, max_side=2048)  # type: ignore[attr-defined]
    assert sent is not None and sent.seed_resize_from == (64, 64)
    with_variation = txt2img(studio, width=128, seed_resize_from_w=64, seed_resize_from_h=64, subseed=9,
                             subseed_strength=0.5)  # fmt: skip
    assert distance(pixels(with_variation), pixels(resized)) > 0.5
    assert (
        "Variation seed: 9, Variation seed strength: 0.5, Seed resize from: 64x64"
        in with_variation.images[0].parameters
    )  # type: ignore[attr-defined]


def test_controlnet_and_the_hires_fix_resize_the_seed_too(studio: Studio) -> None:
    edges = Image.new("RGB", (64, 64), "white")
    values: dict[str, object] = {"image": edges, "prompt": "a house", "sampler": "Euler", "seed": 3, **SMALL}
    controlled = ControlNetRequest(**values)  # type: ignore[arg-type]
    plain = pixels(studio.service.controlnet(controlled))
    own_size = replace(controlled, seed_resize_from_w=64, seed_resize_from_h=64)
    assert np.array_equal(pixels(studio.service.controlnet(own_size)), plain), "the seed's own noise"
    other = studio.service.controlnet(replace(controlled, seed_resize_from_w=128, seed_resize_from_h=64))
    assert distance(pixels(other), plain) > 0.5 and "Seed resize from: 128x64" in other.images[0].parameters
    hires = {"enable_hr": True, "hr_upscaler": "Lanczos", "denoising_strength": 0.6}
    fixed = pixels(txt2img(studio, **hires))
    resized = txt2img(studio, **hires, seed_resize_from_w=64, seed_resize_from_h=64)
    assert distance(pixels(resized), fixed) > 0.5, "the second pass's noise, at 128x128, is built around 64x64's"


def test_wrong_seed_resize_values_are_messages(studio: Studio) -> None:
    with pytest.raises(InvalidRequest, match=r"resize seed from needs both a width and a height \(got 64x0\)"):
        txt2img(studio, seed_resize_from_w=64)
    with pytest.raises(InvalidRequest, match="resize seed from: width must be a multiple of 8, got 100"):
        txt2img(studio, seed_resize_from_w=100, seed_resize_from_h=64)
    assert txt2img(studio, seed_resize_from_w=-1, seed_resize_from_h=-1).request.seed_resize_from_w == 0  # type: ignore[attr-defined]


def test_wrong_variation_values_are_messages(studio: Studio) -> None:
    wrong_strength = r"subseed_strength \(variation strength\) must be between 0 and 1, got 1.5"
    with pytest.raises(InvalidRequest, match=wrong_strength):
        txt2img(studio, subseed=3, subseed_strength=1.5)
    with pytest.raises(InvalidRequest, match=r"subseed \(variation seed\) must be -1 \(random\) or between 0 and"):
        txt2img(studio, subseed=-5, subseed_strength=0.5)
    with pytest.raises(InvalidRequest, match=r"subseed \(variation seed\) must be a whole number, got 2.5"):
        txt2img(studio, subseed=2.5)


def test_image_to_image_varies_the_noise_it_adds(studio: Studio) -> None:
    picture = txt2img(studio).images[0].image  # type: ignore[attr-defined]

    def redraw(**changes: object) -> np.ndarray:
        values: dict[str, object] = {"image": picture, "prompt": "a blue house", "sampler": "Euler a", "seed": 3}
        request = Img2ImgRequest(**{**values, "strength": 0.6, **SMALL, **changes})  # type: ignore[arg-type]
        return pixels(studio.service.img2img(request))

    plain = redraw()
    assert distance(redraw(subseed=8, subseed_strength=TINY), plain) < 0.5
    near, far = (distance(redraw(subseed=8, subseed_strength=s), plain) for s in (0.2, 0.9))
    assert 0.5 < near < far
    assert np.array_equal(redraw(subseed=8, subseed_strength=0.5), redraw(subseed=8, subseed_strength=0.5))


@pytest.mark.parametrize("strength", [0.75, 1.0], ids=["noised-picture", "pure-noise"])
def test_inpainting_varies_only_the_masked_part(studio: Studio, strength: float) -> None:
    picture = txt2img(studio).images[0].image  # type: ignore[attr-defined]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))

    def repaint(**changes: object) -> np.ndarray:
        values: dict[str, object] = {"image": picture, "mask_image": mask, "prompt": "a door", "seed": 3}
        values.update(strength=strength, mask_blur=0, num_inference_steps=4, **changes)
        request = InpaintRequest(**values)  # type: ignore[arg-type]
        return pixels(studio.service.inpaint(request))

    plain = repaint()
    assert distance(repaint(subseed=8, subseed_strength=TINY), plain) < 0.5
    near, far = (distance(repaint(subseed=8, subseed_strength=s), plain) for s in (0.2, 0.9))
    assert 0.5 < near < far
    varied = repaint(subseed=8, subseed_strength=0.9)
    outside = np.asarray(mask) == 0
    assert np.array_equal(varied[outside], np.asarray(picture, dtype=np.float64)[outside]), "the rest is kept"


def test_controlnet_moves_to_the_variation_seed_too(studio: Studio) -> None:
    edges = Image.new("RGB", (64, 64), "black")
    edges.paste((255, 255, 255), (20, 20, 44, 44))

    def draw(**changes: object) -> np.ndarray:
        values: dict[str, object] = {"image": edges, "prompt": "a box", "sampler": "Euler", "seed": 3}
        request = ControlNetRequest(**{**values, "num_inference_steps": 4, **changes})  # type: ignore[arg-type]
        return pixels(studio.service.controlnet(request))

    plain, other = draw(), draw(seed=8)
    assert distance(draw(subseed=8, subseed_strength=TINY), plain) < 0.5
    assert distance(draw(subseed=8, subseed_strength=1.0), other) < 0.5


def test_the_hires_fix_varies_both_passes(studio: Studio) -> None:
    hires = {"enable_hr": True, "hr_scale": 1.5}
    plain = pixels(txt2img(studio, **hires))
    assert distance(pixels(txt2img(studio, subseed=9, subseed_strength=TINY, **hires)), plain) < 0.5
    varied = txt2img(studio, subseed=9, subseed_strength=0.5, **hires)
    assert varied.images[0].image.size == (96, 96)  # type: ignore[attr-defined]
    assert distance(pixels(varied), plain) > 0.5
    assert np.array_equal(pixels(varied), pixels(txt2img(studio, subseed=9, subseed_strength=0.5, **hires)))


def test_sdxl_moves_to_the_variation_seed(tmp_path: Path) -> None:
    studio = build_studio(make_settings(save_tiny_sdxl_model(tmp_path / "sdxl"), None))
    other = pixels(txt2img(studio, seed=9))
    assert distance(pixels(txt2img(studio, subseed=9, subseed_strength=1.0)), other) < 0.5
    picture, mask = Image.new("RGB", (64, 64), (100, 120, 140)), Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for strength in (0.75, 1.0):  # SDXL's inpainting pipeline draws its noise in the same two ways

        def repaint(strength: float = strength, **changes: object) -> np.ndarray:
            values = {"image": picture, "mask_image": mask, "prompt": "x", "seed": 3, "num_inference_steps": 4}
            return pixels(studio.service.inpaint(InpaintRequest(**values, strength=strength, **changes)))  # type: ignore[arg-type]

        plain = repaint()
        assert distance(repaint(subseed=5, subseed_strength=TINY), plain) < 0.5
        assert distance(repaint(subseed=5, subseed_strength=0.8), plain) > 0.5


def test_png_info_reads_the_variation_back(studio: Studio) -> None:
    made = txt2img(studio, batch_size=2, subseed=40, subseed_strength=0.25)
    path = made.images[1].path  # type: ignore[attr-defined]
    assert path is not None
    sent = settings_from_metadata(read_file(str(path)), max_steps=150, max_side=1024)
    assert sent is not None and (sent.seed, sent.subseed, sent.subseed_strength) == (5, 41, 0.25)


def test_compare_sweeps_the_variation_strength_and_each_cell_is_txt2imgs(studio: Studio) -> None:
    values = (0.0, 0.5, 1.0)
    result = studio.service.compare(
        CompareRequest(
            ("a red house",), sampler="Euler", seed=5, subseed=9, axis="Var. strength", axis_values=values, **SMALL
        )
    )
    cells = [np.asarray(cell.image.image, dtype=np.float64) for cell in result.cells]
    assert distance(cells[0], pixels(txt2img(studio))) < 0.5, "strength 0: the seed's picture"
    assert distance(cells[2], pixels(txt2img(studio, seed=9))) < 0.5, "strength 1: the variation seed's"
    half = txt2img(studio, subseed=9, subseed_strength=0.5)
    assert distance(cells[1], pixels(half)) < 0.5
    assert result.cells[1].image.parameters == half.images[0].parameters  # type: ignore[attr-defined]
    assert 'Compare axis: "Var. strength: 0.0, 0.5, 1.0"' in result.grid.parameters


def test_compare_sweeps_variation_seeds_batched_in_one_call(studio: Studio) -> None:
    request = CompareRequest(
        ("a red house",), seed=5, subseed_strength=0.3, axis="Var. seed", axis_values=(11, 12), **SMALL
    )
    result = studio.service.compare(request)
    assert [cell.image.seed for cell in result.cells] == [5, 5]
    assert ["Variation seed: 12," in cell.image.parameters for cell in result.cells] == [False, True]
    alone = txt2img(studio, sampler=request.sampler, subseed=12, subseed_strength=0.3)
    assert distance(np.asarray(result.cells[1].image.image, dtype=np.float64), pixels(alone)) < 0.5
    with pytest.raises(InvalidRequest, match="the Var. seed axis compares variation seeds: set a variation strength"):
        studio.service.compare(replace(request, subseed_strength=0.0))
