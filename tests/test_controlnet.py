"""Canny ControlNet: the edge detector, the derived pipeline, the cache, and generation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from studio import images
from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest, ModelLoadError
from studio.model_manager import DEFAULT_CONTROLNETS, Task
from studio.module_cache import ModuleCache, module_bytes
from studio.requests import ControlNetRequest, Txt2ImgRequest
from tests.conftest import make_settings
from tests.tiny_model import save_tiny_sdxl_model

STEPS = {"num_inference_steps": 4}


def circle(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill="black")
    return image


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(float)


def test_canny_finds_the_outline_of_a_square_and_nothing_else() -> None:
    square = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(square).rectangle((16, 16, 47, 47), fill="white")
    edges = np.asarray(images.canny(square, 100, 200).convert("L"))
    assert images.canny(square, 100, 200).mode == "RGB"
    on = np.argwhere(edges == 255)
    assert len(on) > 100
    # Every edge pixel lies on the square's border (within a pixel), none inside or outside it.
    near_border = (np.abs(on - 16) <= 1) | (np.abs(on - 47) <= 1)
    assert near_border.any(axis=1).all()
    assert edges[32, 32] == 0 and edges[2, 2] == 0
    assert set(np.unique(edges)) == {0, 255}


def test_swapped_thresholds_give_the_ordered_result_and_blank_gives_no_edges() -> None:
    picture = circle()
    assert np.array_equal(np.asarray(images.canny(picture, 200, 100)), np.asarray(images.canny(picture, 100, 200)))
    assert images.is_empty(images.canny(Image.new("RGB", (64, 64), "gray"), 100, 200).convert("L"))


def test_controlnet_pipeline_shares_the_base_and_adds_only_the_controlnet(studio: Studio) -> None:
    base = studio.manager.current().pipeline
    with studio.manager.job(Task.CONTROLNET, "Euler", [1]) as job:
        assert type(job.pipeline).__name__ == "StableDiffusionControlNetPipeline"
        for name in ("unet", "vae", "text_encoder", "tokenizer"):
            assert getattr(job.pipeline, name) is getattr(base, name), name
        added = {name for name, module in job.pipeline.components.items() if module is not None} - {
            name for name, module in base.components.items() if module is not None
        }
        assert added == {"controlnet"}
        controlnet = job.pipeline.controlnet
    assert studio.manager.extras.keys == [("controlnet", studio.settings.controlnet_model)]
    assert studio.manager.extras.used_bytes == module_bytes(controlnet)
    with studio.manager.job(Task.CONTROLNET, "Euler", [1]) as job:
        assert job.pipeline.controlnet is controlnet, "loaded once, then cached"


def test_conditioning_scale_zero_gives_the_txt2img_image(studio: Studio) -> None:
    controlled = studio.service.controlnet(
        ControlNetRequest(circle(), "a cat", controlnet_conditioning_scale=0.0, seed=12, **STEPS)
    )
    plain = studio.service.txt2img(Txt2ImgRequest("a cat", width=64, height=64, seed=12, **STEPS))
    assert np.abs(array(controlled.images[0].image) - array(plain.images[0].image)).mean() < 1.0
    full = studio.service.controlnet(ControlNetRequest(circle(), "a cat", seed=12, **STEPS))
    assert np.abs(array(full.images[0].image) - array(plain.images[0].image)).mean() > 1.0, "weight 1 acts"


def test_edge_map_comes_back_saved_beside_the_images_with_metadata(studio: Studio) -> None:
    result = studio.service.controlnet(
        ControlNetRequest(circle(96), "a cat", low_threshold=50, high_threshold=150, seed=4, batch_size=2, **STEPS)
    )
    assert [item.image.size for item in result.images] == [(96, 96), (96, 96)], "size follows the control image"
    control = result.control_image
    assert control is not None and control.path is not None
    assert control.path.name == result.images[0].path.name.replace(".png", "-canny.png")  # type: ignore[union-attr]
    with Image.open(control.path) as saved:
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(images.canny(circle(96), 50, 150)))
    text = result.images[1].parameters
    assert (
        'ControlNet 0: "Module: canny, Model: tiny-controlnet, Weight: 1, Resize Mode: Crop and Resize, '
        'Threshold A: 50, Threshold B: 150, Guidance Start: 0, Guidance End: 1"' in text
    )


def test_none_preprocessor_uses_the_upload_as_the_edge_map(studio: Studio) -> None:
    edge_map = images.canny(circle(), 100, 200)
    result = studio.service.controlnet(ControlNetRequest(edge_map, "a cat", preprocessor="none", seed=1, **STEPS))
    assert result.control_image is not None
    assert np.array_equal(np.asarray(result.control_image.image), np.asarray(edge_map))


def test_odd_inputs_are_handled_or_explained(studio: Studio) -> None:
    blank = studio.service.controlnet(ControlNetRequest(Image.new("RGB", (64, 64), "gray"), "a cat", seed=1, **STEPS))
    assert any("edge map is empty" in note for note in blank.notes)
    swapped = studio.service.controlnet(
        ControlNetRequest(circle(), "a cat", low_threshold=200, high_threshold=100, seed=1, **STEPS)
    )
    assert (swapped.request.low_threshold, swapped.request.high_threshold) == (100, 200)
    assert any("used the other way round" in note for note in swapped.notes)
    small_limit = build_studio(
        make_settings(
            studio.settings.model, None, controlnet_model=studio.settings.controlnet_model, max_pixels=96 * 96
        )
    )
    huge = small_limit.service.controlnet(ControlNetRequest(Image.new("RGB", (1200, 900)), "a cat", seed=1, **STEPS))
    width, height = huge.images[0].image.size
    assert width * height <= 96 * 96 and width % 8 == 0 and height % 8 == 0
    assert abs(width / height - 4 / 3) < 0.1, "scaled down, aspect kept"
    with pytest.raises(InvalidRequest, match="the control image is 20x20; ControlNet needs at least 64x64"):
        studio.service.controlnet(ControlNetRequest(Image.new("RGB", (20, 20)), "a cat", **STEPS))
    with pytest.raises(InvalidRequest, match=r"guidance_start \(0.8\) must be below guidance_end \(0.2\)"):
        studio.service.controlnet(
            ControlNetRequest(circle(), "a cat", control_guidance_start=0.8, control_guidance_end=0.2, **STEPS)
        )
    with pytest.raises(InvalidRequest, match="conditioning_scale .* must be between 0 and 2"):
        studio.service.controlnet(ControlNetRequest(circle(), "a cat", controlnet_conditioning_scale=3, **STEPS))


def test_a_controlnet_of_another_family_is_a_clear_message(tmp_path: Path, tiny_controlnet: Path) -> None:
    sdxl = save_tiny_sdxl_model(tmp_path / "tiny-sdxl")
    studio = build_studio(make_settings(sdxl, None, controlnet_model=str(tiny_controlnet)))
    with pytest.raises(ModelLoadError, match="was made for another model family than the loaded .*SDXL"):
        studio.service.controlnet(ControlNetRequest(circle(), "a cat", **STEPS))
    assert studio.manager.controlnet_for(studio.manager.current()) == str(tiny_controlnet)


def test_each_family_has_its_default_controlnet(tiny_model: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None))
    assert studio.manager.controlnet_for(studio.manager.current()) == DEFAULT_CONTROLNETS["SD 1.x"]
    assert DEFAULT_CONTROLNETS["SDXL"] == "diffusers/controlnet-canny-sdxl-1.0"


def test_module_cache_evicts_least_recently_used_but_never_one_in_use() -> None:
    def module(width: int) -> torch.nn.Module:
        return torch.nn.Linear(width, width, bias=False)  # width*width*4 bytes

    cache = ModuleCache(budget_bytes=2 * 64 * 64 * 4)
    loads: list[str] = []

    def loader(name: str, width: int = 64):
        def load() -> torch.nn.Module:
            loads.append(name)
            return module(width)

        return load

    with cache.use(("controlnet", "a"), loader("a")):
        pass
    with cache.use(("controlnet", "b"), loader("b")):
        pass
    with cache.use(("controlnet", "a"), loader("a")):  # a is now the most recent
        pass
    with cache.use(("controlnet", "c"), loader("c")):  # over budget: b (least recent, unused) goes
        assert cache.keys == [("controlnet", "a"), ("controlnet", "c")]
    assert loads == ["a", "b", "c"]
    with cache.use(("controlnet", "big"), loader("big", 128)) as big:  # bigger than the budget, but in use
        assert ("controlnet", "big") in cache.keys
        assert big.weight.shape == (128, 128)
    assert ("controlnet", "big") not in cache.keys, "dropped once no one holds it"
