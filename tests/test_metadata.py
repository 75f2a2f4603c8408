import io
from pathlib import Path

import piexif
import piexif.helper
import pytest
from PIL import Image

from studio.metadata import (
    Parameters,
    check_image_format,
    decode_user_comment,
    encode_user_comment,
    format_parameters,
    parse_parameters,
    png_info,
    read_metadata,
    write_image,
)


def test_parameters_text_is_written_as_a1111_writes_it() -> None:
    text = format_parameters(
        Parameters(
            prompt="a cat in a hat",
            negative_prompt="blurry",
            fields={
                "Steps": 20,
                "Sampler": "DPM++ 2M Karras",
                "CFG scale": 7.0,
                "Seed": 42,
                "Size": "512x512",
                "Model": "sd15",
            },
        )
    )
    assert text == (
        "a cat in a hat\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd15"
    )


def test_no_negative_prompt_line_when_empty_and_fractional_cfg() -> None:
    text = format_parameters(Parameters("x", "", {"Steps": 5, "CFG scale": 7.5, "Seed": 1}))
    assert text == "x\nSteps: 5, CFG scale: 7.5, Seed: 1"


def test_values_with_commas_are_quoted_and_read_back() -> None:
    params = Parameters("p", "", {"Steps": 5, "Model": "my, model: v2", "Seed": 3})
    text = format_parameters(params)
    assert 'Model: "my, model: v2"' in text
    assert parse_parameters(text).fields["Model"] == "my, model: v2"


def test_round_trip_through_a_png_file() -> None:
    params = Parameters(
        "a red fox\nin snow",
        "ugly, blurry",
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 6.5, "Seed": 123, "Size": "64x64"},
    )
    text = format_parameters(params)
    record = {"request": {"prompt": "a red fox\nin snow", "guidance_scale": 6.5}, "seed": 123}
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=png_info(text, record))
    meta = read_metadata(Image.open(io.BytesIO(buffer.getvalue())))
    assert meta.parameters_text == text
    assert meta.record == record
    assert meta.parameters is not None
    assert meta.parameters.prompt == "a red fox\nin snow"
    assert meta.parameters.negative_prompt == "ugly, blurry"
    assert meta.parameters.fields == {
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "6.5",
        "Seed": "123",
        "Size": "64x64",
    }


def test_reads_a_hand_written_a1111_text_with_schedule_type() -> None:
    text = (
        "masterpiece, a castle\n"
        "Negative prompt: lowres\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
    )
    parsed = parse_parameters(text)
    assert parsed.prompt == "masterpiece, a castle"
    assert parsed.negative_prompt == "lowres"
    assert parsed.fields["Sampler"] == "DPM++ 2M Karras"
    assert parsed.fields["Size"] == "512x768"
    assert parsed.fields["Model hash"] == "6ce0161689"
    assert "Schedule type" not in parsed.fields


def test_image_without_metadata_reads_as_empty() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    meta = read_metadata(Image.open(buffer))
    assert meta.parameters is None
    assert meta.record is None
    assert meta.parameters_text is None


# --- JPEG and WebP: the parameters text in EXIF UserComment, as A1111 writes it ---------------------------------

A1111_TEXT = (
    "masterpiece, a castle on a hill, golden hour\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Lora hashes: "x: 1a2b", '
    "Version: v1.10.1"
)


def saved(image_format: str, text: str) -> Image.Image:
    buffer = io.BytesIO()
    write_image(Image.new("RGB", (16, 8), (200, 40, 40)), buffer, image_format, text, {"seed": 1})
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(("image_format", "pil_format"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_every_format_round_trips_the_parameters(image_format: str, pil_format: str) -> None:
    text = "un château, 城\nNegative prompt: flou\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 9, Size: 16x8"
    image = saved(image_format, text)
    assert image.format == pil_format
    meta = read_metadata(image)
    assert meta.parameters_text == text
    assert meta.parameters is not None and meta.parameters.negative_prompt == "flou"
    assert (meta.record is not None) == (image_format == "png"), "only PNG has a place for the JSON record"


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
def test_a1111_reads_our_exif_as_it_reads_its_own(image_format: str) -> None:
    """piexif is what A1111 reads EXIF with: our UserComment must decode there to the same text."""
    image = saved(image_format, A1111_TEXT)
    exif = piexif.load(image.info["exif"])
    assert piexif.helper.UserComment.load(exif["Exif"][piexif.ExifIFD.UserComment]) == A1111_TEXT


@pytest.mark.parametrize(("suffix", "pil_format"), [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_reads_an_image_written_as_a1111_writes_it(tmp_path: Path, suffix: str, pil_format: str) -> None:
    """A1111 saves the picture, then inserts an EXIF block made by piexif with a "unicode" UserComment."""
    path = tmp_path / f"00001-3141592653{suffix}"
    Image.new("RGB", (16, 16), (10, 120, 200)).save(path, format=pil_format, quality=80)
    comment = piexif.helper.UserComment.dump(A1111_TEXT, encoding="unicode")
    piexif.insert(piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}}), str(path))
    with Image.open(path) as image:
        meta = read_metadata(image)
    assert meta.parameters_text == A1111_TEXT
    assert meta.parameters is not None
    assert meta.parameters.fields["Sampler"] == "DPM++ 2M Karras"
    assert meta.parameters.fields["Denoising strength"] == "0.45"


def test_user_comment_codes_and_byte_orders() -> None:
    assert decode_user_comment(encode_user_comment("héllo")) == "héllo"
    assert decode_user_comment(b"UNICODE\x00" + "héllo".encode("utf-16-le")) == "héllo"
    assert decode_user_comment(b"ASCII\x00\x00\x00Steps: 20") == "Steps: 20"
    assert decode_user_comment(b"\x00" * 8 + b"Steps: 20") == "Steps: 20"
    assert decode_user_comment(b"UNICODE\x00") is None
    assert decode_user_comment(None) is None


def test_an_unknown_format_is_refused_by_name() -> None:
    assert check_image_format("JPG") == "jpeg"
    with pytest.raises(ValueError, match="png, jpeg, webp"):
        check_image_format("gif")
