"""PNG Info: the settings read back from our own files and from A1111's text, as "Send to" will put them in."""

import io
from pathlib import Path

import pytest
from PIL import Image

from studio.composition import Studio
from studio.metadata import read_metadata, write_image
from studio.pnginfo import SentSettings, settings_from_metadata
from studio.requests import Img2ImgRequest, Txt2ImgRequest
from studio.schedulers import DEFAULT_SAMPLER, SAMPLER_NAMES, sampler_from_a1111
from studio.ui.pnginfo import read_file

LIMITS = {"max_steps": 150, "max_side": 2048}


def sent_from_text(text: str, image_format: str = "png", **limits: int) -> SentSettings:
    buffer = io.BytesIO()
    write_image(Image.new("RGB", (8, 8)), buffer, image_format, text, {})
    meta = read_metadata(Image.open(io.BytesIO(buffer.getvalue())))
    sent = settings_from_metadata(meta, **{**LIMITS, **limits})
    assert sent is not None
    return sent


NEW_FORM = (
    "a knight in shining armor, (detailed:1.2)\n"
    "on a white horse\n"
    "Negative prompt: lowres, blurry\n"
    "Steps: 32, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 4242424242, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 17, Variation seed strength: 0.25, "
    "Seed resize from: 448x640, Denoising strength: 0.35, Clip skip: 2, Tiling: True, Version: v1.10.1"
)
OLD_FORM = (
    "a knight in shining armor, (detailed:1.2)\n"
    "on a white horse\n"
    "Negative prompt: lowres, blurry\n"
    "Steps: 32, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 4242424242, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.35, Version: v1.6.0"
)


@pytest.mark.parametrize("text", [NEW_FORM, OLD_FORM], ids=["schedule-type", "sampler-with-schedule"])
@pytest.mark.parametrize("image_format", ["png", "jpeg", "webp"])
def test_a_hand_written_a1111_text_gives_every_field(text: str, image_format: str) -> None:
    sent = sent_from_text(text, image_format)
    assert sent == SentSettings(
        prompt="a knight in shining armor, (detailed:1.2)\non a white horse",
        negative_prompt="lowres, blurry",
        sampler="DPM++ 2M Karras",
        steps=32,
        guidance_scale=6.5,
        seed=4242424242,
        width=512,
        height=768,
        strength=0.35,
        notes=(),
        clip_skip=2 if "Clip skip: 2" in text else 1,  # A1111 writes it only when it is not 1
        subseed=17 if "Variation seed" in text else None,
        subseed_strength=0.25 if "Variation seed" in text else 0,  # and the variation only when there is one
        seed_resize_from=(448, 640) if "Seed resize from" in text else (0, 0),  # written only when on
        tiling="Tiling: True" in text,
        scheduler="Automatic",
    )


def test_sampler_names_of_other_tools_map_to_ours() -> None:
    assert sampler_from_a1111("Euler a") == ("Euler a", None)
    assert sampler_from_a1111("euler A") == ("Euler a", None)
    assert sampler_from_a1111("PLMS") == ("PNDM", None)
    assert sampler_from_a1111("k_dpmpp_2m_ka") == ("DPM++ 2M Karras", None)
    nearest, note = sampler_from_a1111("DPM++ 2M SDE Karras")
    assert nearest == "DPM++ 2M Karras" and note and "nearest" in note
    nearest, note = sampler_from_a1111("DPM++ 2M Exponential")  # A1111 1.8+: "DPM++ 2M" + "Schedule type: Exponential"
    assert nearest == "DPM++ 2M" and note
    unknown, note = sampler_from_a1111("Magic Sampler 9000")
    assert unknown == DEFAULT_SAMPLER and note and "unknown" in note
    for name in SAMPLER_NAMES:
        assert sampler_from_a1111(name) == (name, None)


def test_values_outside_this_studio_are_fitted_and_said() -> None:
    text = "p\nSteps: 400, Sampler: DPM2 a Karras, CFG scale: 7, Seed: 1, Size: 1000x3000, Denoising strength: 3"
    sent = sent_from_text(text, max_steps=150, max_side=1024)
    assert (sent.steps, sent.sampler, sent.width, sent.height, sent.strength) == (150, "Euler a", 1000, 1024, None)
    joined = " | ".join(sent.notes)
    for said in ("Steps 400 became 150", "'DPM2 a Karras' is not available", "Height 3000 became 1024", "strength 3"):
        assert said in joined


def test_an_image_without_parameters_gives_nothing() -> None:
    assert settings_from_metadata(read_metadata(Image.new("RGB", (8, 8))), **LIMITS) is None


def test_a_file_that_is_not_an_image_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(Exception, match="not an image the studio can read"):
        read_file(str(path))


def test_our_own_files_round_trip_every_field(studio: Studio) -> None:
    """Generate, read the saved file back, and get exactly what was asked (the JSON record keeps full precision)."""
    made = studio.service.txt2img(
        Txt2ImgRequest(
            prompt="a red fox, snow",
            negative_prompt="blurry",
            sampler="Euler a",
            num_inference_steps=3,
            guidance_scale=6.25,
            width=64,
            height=72,
            seed=77,
            batch_size=2,
        )
    )
    second = made.images[1]
    assert second.path is not None
    sent = settings_from_metadata(read_file(str(second.path)), **LIMITS)
    assert sent == SentSettings(
        "a red fox, snow",
        "blurry",
        "Euler a",
        3,
        6.25,
        78,
        64,
        72,
        None,
        (),
        clip_skip=1,
        subseed_strength=0,
        seed_resize_from=(0, 0),
        tiling=False,
        scheduler="Automatic",
    )

    redrawn = studio.service.img2img(
        Img2ImgRequest(
            image=made.images[0].image,
            prompt="a fox at night",
            sampler="DDIM",
            num_inference_steps=4,
            guidance_scale=5,
            strength=0.6,
            width=64,
            height=64,
            seed=5,
        ),
        image_format="webp",
    )
    path = redrawn.images[0].path
    assert path is not None and path.suffix == ".webp"
    sent = settings_from_metadata(read_file(str(path)), **LIMITS)
    assert sent == SentSettings(
        "a fox at night",
        "",
        "DDIM",
        4,
        5.0,
        5,
        64,
        64,
        0.6,
        (),
        clip_skip=1,
        subseed_strength=0,
        tiling=False,
        seed_resize_from=(0, 0),
        scheduler="Automatic",
    )
