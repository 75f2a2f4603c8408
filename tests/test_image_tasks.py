"""Image to image and inpainting through the service, on the weights already loaded for txt2img."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from studio import images
from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.metadata import read_metadata
from studio.model_manager import Task
from studio.requests import Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from tests.conftest import make_settings

STEPS = {"num_inference_steps": 4}


def picture(width: int = 100, height: int = 80, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def square_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.mark.parametrize("task", [Task.IMG2IMG, Task.INPAINT])
def test_image_tasks_share_the_base_modules(studio: Studio, task: Task) -> None:
    base = studio.manager.current().pipeline
    with studio.manager.job(task, "Euler", [1]) as job:
        for name in ("unet", "vae", "text_encoder", "tokenizer"):
            assert getattr(job.pipeline, name) is getattr(base, name), name
        assert job.pipeline.scheduler is not base.scheduler
    assert base.unet.dtype == torch.float32


def test_img2img_gives_the_requested_size_and_reproduces(studio: Studio) -> None:
    request = Img2ImgRequest(picture(), "a red house", width=64, height=96, strength=0.5, seed=5, batch_size=2, **STEPS)
    first = studio.service.img2img(request)
    assert [item.image.size for item in first.images] == [(64, 96), (64, 96)]
    again = studio.service.img2img(
        Img2ImgRequest(picture(), "a red house", width=64, height=96, strength=0.5, seed=6, **STEPS)
    )
    assert np.abs(array(first.images[1].image) - array(again.images[0].image)).mean() < 1.0
    assert "Denoising strength: 0.5" in first.images[0].parameters
    assert "Size: 64x96" in first.images[0].parameters


def test_img2img_runs_only_strength_times_steps(studio: Studio) -> None:
    steps: list[tuple[int, int]] = []
    studio.service.img2img(
        Img2ImgRequest(picture(), "a cat", width=64, height=64, strength=0.5, num_inference_steps=10, seed=1),
        progress=lambda done, total: steps.append((done, total)),
    )
    assert steps[-1] == (5, 5)


def test_too_low_strength_is_a_clear_error(studio: Studio) -> None:
    with pytest.raises(InvalidRequest, match="strength 0.02 with 20 steps leaves no denoising step to run"):
        studio.service.img2img(
            Img2ImgRequest(picture(), "a cat", width=64, height=64, strength=0.02, num_inference_steps=20)
        )
    with pytest.raises(InvalidRequest, match="image is missing"):
        studio.service.img2img(Img2ImgRequest(None, "a cat", width=64, height=64))  # type: ignore[arg-type]


@pytest.mark.parametrize("only_masked", [False, True])
@pytest.mark.parametrize("content", images.MASKED_CONTENT)
def test_inpaint_keeps_every_pixel_outside_the_mask(studio: Studio, only_masked: bool, content: str) -> None:
    source = picture(100, 80)  # not a multiple of 8: generated at 96x80 or a crop, returned at 100x80
    mask = square_mask(source.size, (30, 20, 60, 50))
    result = studio.service.inpaint(
        InpaintRequest(source, mask, "a green tree", mask_blur=3, inpaint_only_masked=only_masked, padding=8,
                       masked_content=content, seed=3, batch_size=2, **STEPS)
    )  # fmt: skip
    outside = array(images.blur(mask, 3).convert("RGB"))[..., 0] == 0
    for item in result.images:
        assert item.image.size == source.size
        out = array(item.image)
        assert (out[outside] == array(source)[outside]).all(), "pixels outside the mask are unchanged"
        assert np.abs(out[25:45, 35:55] - array(source)[25:45, 35:55]).mean() > 5, "the masked region changed"


def test_inpaint_metadata_records_the_options(studio: Studio) -> None:
    source = picture(64, 64)
    result = studio.service.inpaint(
        InpaintRequest(source, square_mask((64, 64), (8, 8, 30, 30)), "a cat", mask_blur=2,
                       inpaint_only_masked=True, padding=16, masked_content="fill", seed=9, **STEPS)
    )  # fmt: skip
    text = result.images[0].parameters
    assert "Size: 64x64" in text
    assert "Denoising strength: 0.75, Mask blur: 2, Inpaint area: Only masked, Masked area padding: 16" in text
    assert "Masked content: fill" in text
    record = read_metadata(result.images[0].image).record
    assert record is not None and record["request"]["task"] == "inpaint"
    assert record["request"]["image_size"] == [64, 64]


def test_mask_of_another_size_and_grey_values_is_resized_and_thresholded(studio: Studio) -> None:
    source = picture(64, 64)
    grey_small = Image.new("L", (32, 32), 100)  # below the threshold: keep
    ImageDraw.Draw(grey_small).rectangle((8, 8, 15, 15), fill=200)  # above: repaint (16..31 at full size)
    result = studio.service.inpaint(InpaintRequest(source, grey_small, "a cat", mask_blur=0, seed=1, **STEPS))
    out, src = array(result.images[0].image), array(source)
    assert (out[:14, :] == src[:14, :]).all() and (out[34:, :] == src[34:, :]).all()
    assert np.abs(out[17:30, 17:30] - src[17:30, 17:30]).mean() > 5


def test_invert_mask_repaints_the_other_side(studio: Studio) -> None:
    source = picture(64, 64)
    mask = square_mask((64, 64), (0, 0, 31, 63))  # the left half
    result = studio.service.inpaint(
        InpaintRequest(source, mask, "a cat", mask_blur=0, invert_mask=True, seed=1, **STEPS)
    )
    out, src = array(result.images[0].image), array(source)
    assert (out[:, :32] == src[:, :32]).all(), "the painted half is kept"
    assert np.abs(out[:, 34:] - src[:, 34:]).mean() > 5


@pytest.mark.parametrize(
    ("mask", "invert", "message"),
    [
        (Image.new("L", (64, 64), 0), False, "the mask is empty: paint over the part of the picture to change"),
        (Image.new("L", (64, 64), 255), True, "the mask is empty.*turn off 'invert mask'"),
        (None, False, "the mask is missing"),
    ],
)
def test_unusable_masks_are_clear_errors(studio: Studio, mask: Image.Image | None, invert: bool, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        studio.service.inpaint(InpaintRequest(picture(64, 64), mask, "a cat", invert_mask=invert))  # type: ignore[arg-type]


def test_dedicated_inpaint_model_adds_only_its_unet(tiny_model: Path, tiny_inpaint_model: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None, inpaint_model=str(tiny_inpaint_model)))
    base = studio.manager.current().pipeline
    with studio.manager.job(Task.INPAINT, "Euler", [1]) as job:
        assert job.pipeline.unet.config.in_channels == 9
        assert job.pipeline.unet is not base.unet
        for name in ("vae", "text_encoder", "tokenizer"):
            assert getattr(job.pipeline, name) is getattr(base, name), name
    source = picture(64, 64)
    mask = square_mask((64, 64), (16, 16, 47, 47))
    result = studio.service.inpaint(InpaintRequest(source, mask, "a cat", mask_blur=0, seed=1, **STEPS))
    assert (array(result.images[0].image)[:10] == array(source)[:10]).all()
    assert base.unet.config.in_channels == 4, "txt2img keeps the regular UNet"


def test_a_loaded_inpainting_model_inpaints_and_explains_the_other_tabs(tiny_inpaint_model: Path) -> None:
    studio = build_studio(make_settings(tiny_inpaint_model, None))
    source = picture(64, 64)
    result = studio.service.inpaint(
        InpaintRequest(source, square_mask((64, 64), (16, 16, 47, 47)), "a cat", seed=1, **STEPS)
    )
    assert result.images[0].image.size == (64, 64)
    with pytest.raises(InvalidRequest, match="is an inpainting model; use it in the Inpaint tab"):
        studio.service.txt2img(Txt2ImgRequest("a cat", width=64, height=64, **STEPS))


def test_a_regular_model_as_inpaint_model_is_refused(tiny_model: Path) -> None:
    from studio.errors import ModelLoadError

    studio = build_studio(make_settings(tiny_model, None, inpaint_model=str(tiny_model)))
    with pytest.raises(ModelLoadError, match="is not an inpainting model"):
        studio.service.inpaint(InpaintRequest(picture(64, 64), square_mask((64, 64), (0, 0, 9, 9)), "a cat", **STEPS))
    assert studio.service.txt2img(Txt2ImgRequest("a cat", width=64, height=64, seed=1, **STEPS)).images
