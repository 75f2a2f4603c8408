import io

from PIL import Image

from studio.metadata import Parameters, format_parameters, parse_parameters, png_info, read_metadata


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
