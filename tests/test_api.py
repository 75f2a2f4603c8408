"""The ``/txt2img`` endpoint through gradio_client, against the app launched in-process on loopback."""

from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from studio.composition import Studio
from studio.metadata import read_metadata

ENDPOINT_PARAMETERS = {
    "/txt2img": [
        "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "width", "height", "seed", "batch_size",
        "image_format", "enable_hr", "hr_upscaler", "hr_scale", "hr_second_pass_steps", "denoising_strength",
        "clip_skip", "subseed", "subseed_strength", "tiling", "styles", "batch_count", "hr_sampler_name",
        "hr_prompt", "hr_negative_prompt", "seed_resize_from_w", "seed_resize_from_h", "scheduler",
    ],
    "/img2img": [
        "image", "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "strength", "seed",
        "batch_size", "width", "height", "resize_mode", "image_format", "clip_skip", "subseed", "subseed_strength",
        "tiling", "styles", "batch_count", "scheduler",
    ],
    "/canny": ["image", "low_threshold", "high_threshold", "preprocessor"],
    "/compare": [
        "prompts", "negative_prompt", "sampler", "steps", "guidance_scale", "width", "height", "seed", "axis",
        "axis_values", "image", "strength", "clip_skip", "subseed", "subseed_strength", "tiling", "styles",
        "column_axis", "column_values", "image_format",
    ],
    "/controlnet": [
        "image", "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "low_threshold", "high_threshold",
        "conditioning_scale", "guidance_start", "guidance_end", "seed", "batch_size", "preprocessor", "width", "height",
        "image_format", "clip_skip", "subseed", "subseed_strength", "tiling", "styles", "batch_count",
        "seed_resize_from_w", "seed_resize_from_h", "scheduler",
    ],
    "/inpaint": [
        "image", "mask", "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "strength", "seed",
        "mask_blur", "inpaint_only_masked", "padding", "masked_content", "invert_mask", "batch_size", "image_format",
        "clip_skip", "subseed", "subseed_strength", "tiling", "styles", "batch_count", "scheduler",
        "soft_inpainting", "soft_schedule_bias", "soft_preservation_strength", "soft_transition_contrast",
    ],
    "/png_info": ["image"],
    "/forward_process": ["image", "schedule", "timestep", "seed"],
    "/forward_process_latent": ["image", "schedule", "timestep", "seed"],
    "/trajectory": [
        "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "width", "height", "seed", "every",
    ],
    "/sampler_race": [
        "prompt", "negative_prompt", "samplers", "steps", "ddpm_steps", "guidance_scale", "width", "height", "seed",
        "eta", "rerun",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False)


def test_endpoint_parameters_have_the_documented_names(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    for name, parameters in ENDPOINT_PARAMETERS.items():
        endpoint = api["named_endpoints"][name]
        assert [p["parameter_name"] for p in endpoint["parameters"]] == parameters, name
        if name not in ("/canny", "/png_info"):
            assert endpoint["returns"][0]["component"] == "Gallery", name
    assert set(api["named_endpoints"]) == set(ENDPOINT_PARAMETERS), "helpers (stop, select, send to) stay private"


def test_generates_pngs_with_a1111_parameters(client: Client) -> None:
    gallery, seeds, parameters, _notes = client.predict(
        prompt="a cat on the moon",
        negative_prompt="blurry",
        sampler="Euler a",
        steps=3,
        guidance_scale=7,
        width=64,
        height=96,
        seed=21,
        batch_size=2,
        api_name="/txt2img",
    )
    assert seeds == "21, 22"
    assert [item["caption"] for item in gallery] == ["Seed 21", "Seed 22"]
    assert parameters.startswith("a cat on the moon\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7")
    second = Path(gallery[1]["image"])
    assert second.suffix == ".png"
    with Image.open(second) as image:
        assert image.format == "PNG" and image.size == (64, 96)
        meta = read_metadata(image)
    assert meta.parameters is not None and meta.parameters.fields["Seed"] == "22"
    assert meta.record is not None and meta.record["request"]["prompt"] == "a cat on the moon"


def test_txt2img_endpoint_with_the_hires_fix(client: Client) -> None:
    gallery, _seeds, parameters, _notes = client.predict(
        prompt="a cat", negative_prompt="", sampler="Euler", steps=3, guidance_scale=7, width=64, height=64, seed=4,
        batch_size=1, enable_hr=True, hr_upscaler="Lanczos", hr_scale=1.5, denoising_strength=0.5,
        hr_prompt="a dog", api_name="/txt2img",
    )  # fmt: skip
    assert "Size: 64x64" in parameters and "Hires upscale: 1.5, Hires upscaler: Lanczos" in parameters
    assert "Hires prompt: a dog" in parameters
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (96, 96)


def test_bad_input_is_a_message_and_the_server_keeps_serving(client: Client) -> None:
    with pytest.raises(AppError, match="width must be a multiple of 8, got 100; try 104 or 96"):
        client.predict(
            prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=100, height=64,
            seed=1, batch_size=1, api_name="/txt2img",
        )  # fmt: skip
    with pytest.raises(AppError, match="Nope.*(list of choices|choose one of).*Euler a"):
        client.predict(
            prompt="x", negative_prompt="", sampler="Nope", steps=2, guidance_scale=7, width=64, height=64,
            seed=1, batch_size=1, api_name="/txt2img",
        )  # fmt: skip
    gallery, *_ = client.predict(
        prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
        seed=1, batch_size=1, api_name="/txt2img",
    )  # fmt: skip
    assert len(gallery) == 1


def test_same_seed_through_the_api_gives_the_same_file_bytes(client: Client) -> None:
    def generate() -> bytes:
        gallery, *_ = client.predict(
            prompt="a dog", negative_prompt="", sampler="DPM++ 2M Karras", steps=3, guidance_scale=5, width=64,
            height=64, seed=99, batch_size=1, api_name="/txt2img",
        )  # fmt: skip
        with Image.open(gallery[0]["image"]) as image:
            return image.convert("RGB").tobytes()

    assert generate() == generate()


def save_png(image: Image.Image, path: Path) -> str:
    image.save(path, format="PNG")
    return str(path)


def test_img2img_endpoint(client: Client, tmp_path: Path) -> None:
    source = save_png(Image.new("RGB", (120, 90), (200, 120, 40)), tmp_path / "source.png")
    gallery, seeds, parameters, _notes = client.predict(
        image=handle_file(source), prompt="a house", negative_prompt="", sampler="Euler", steps=4,
        guidance_scale=7, strength=0.5, seed=4, batch_size=1, width=96, height=64, resize_mode="Crop and resize",
        api_name="/img2img",
    )  # fmt: skip
    assert seeds == "4"
    assert "Denoising strength: 0.5" in parameters
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (96, 64)


def test_img2img_too_low_strength_is_a_message(client: Client, tmp_path: Path) -> None:
    source = save_png(Image.new("RGB", (64, 64)), tmp_path / "source.png")
    with pytest.raises(AppError, match="leaves no denoising step to run"):
        client.predict(
            image=handle_file(source), prompt="a house", negative_prompt="", sampler="Euler", steps=4,
            guidance_scale=7, strength=0.1, seed=4, batch_size=1, width=64, height=64, resize_mode="Just resize",
            api_name="/img2img",
        )  # fmt: skip


def test_inpaint_endpoint_with_painted_layers(client: Client, tmp_path: Path) -> None:
    source_image = Image.new("RGB", (72, 64), (30, 60, 90))
    source = save_png(source_image, tmp_path / "source.png")
    layer = Image.new("RGBA", (72, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((20, 20, 44, 44), fill=(0, 0, 0, 255))  # a black brush stroke
    stroke = save_png(layer, tmp_path / "layer.png")
    gallery, _seeds, parameters, _notes = client.predict(
        image={"background": handle_file(source), "layers": [handle_file(stroke)], "composite": None},
        mask=None, prompt="a cat", negative_prompt="", sampler="Euler", steps=4, guidance_scale=7, strength=0.75,
        seed=2, mask_blur=0, inpaint_only_masked=False, padding=32, masked_content="original", invert_mask=False,
        batch_size=1, api_name="/inpaint",
    )  # fmt: skip
    assert "Mask blur: 0" in parameters
    with Image.open(gallery[0]["image"]) as image:
        out = image.convert("RGB")
    assert out.size == (72, 64)
    assert out.getpixel((2, 2)) == (30, 60, 90), "outside the stroke: unchanged"
    assert out.getpixel((32, 32)) != (30, 60, 90), "under the stroke: repainted"


def test_schedule_type_and_soft_inpainting_through_the_endpoints(client: Client, tmp_path: Path) -> None:
    source = save_png(Image.new("RGB", (64, 64), (30, 60, 90)), tmp_path / "source.png")
    white = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(white).rectangle((24, 24, 56, 56), fill=255)
    mask = save_png(white, tmp_path / "mask.png")
    gallery, _seeds, parameters, _notes = client.predict(
        image={"background": handle_file(source), "layers": [], "composite": None}, mask=handle_file(mask),
        prompt="a cat", negative_prompt="", sampler="Euler", steps=3, guidance_scale=7, strength=0.75, seed=2,
        mask_blur=8, inpaint_only_masked=False, padding=32, masked_content="original", invert_mask=False, batch_size=1,
        scheduler="sgm_uniform", soft_inpainting=True, soft_schedule_bias=2, api_name="/inpaint",
    )  # fmt: skip
    assert "Sampler: Euler, Schedule type: SGM Uniform, CFG scale" in parameters
    assert "Soft inpainting enabled: True, Soft inpainting schedule bias: 2," in parameters
    with Image.open(gallery[0]["image"]) as image:
        assert image.convert("RGB").getpixel((2, 2)) == (30, 60, 90), "far from the mask: unchanged"
    with pytest.raises(AppError, match="the Euler a sampler cannot follow the Karras schedule here; with Euler a"):
        client.predict(
            prompt="a cat", negative_prompt="", sampler="Euler a", steps=2, guidance_scale=7, width=64, height=64,
            seed=1, batch_size=1, scheduler="Karras", api_name="/txt2img",
        )  # fmt: skip


def test_inpaint_endpoint_with_an_uploaded_mask_and_an_empty_one(client: Client, tmp_path: Path) -> None:
    source = save_png(Image.new("RGB", (64, 64), (30, 60, 90)), tmp_path / "source.png")
    white_square = Image.new("L", (32, 32), 0)  # half the size: resized to the picture
    ImageDraw.Draw(white_square).rectangle((0, 0, 15, 15), fill=255)
    mask = save_png(white_square, tmp_path / "mask.png")
    arguments = dict(
        prompt="a cat", negative_prompt="", sampler="Euler", steps=4, guidance_scale=7, strength=0.75, seed=2,
        mask_blur=0, inpaint_only_masked=True, padding=8, masked_content="fill", invert_mask=False, batch_size=1,
        api_name="/inpaint",
    )  # fmt: skip
    editor = {"background": handle_file(source), "layers": [], "composite": None}
    gallery, *_ = client.predict(image=editor, mask=handle_file(mask), **arguments)  # type: ignore[arg-type]
    with Image.open(gallery[0]["image"]) as image:
        out = image.convert("RGB")
    assert out.getpixel((50, 50)) == (30, 60, 90)
    assert out.getpixel((10, 10)) != (30, 60, 90)
    with pytest.raises(AppError, match="the mask is empty"):
        client.predict(image=editor, **arguments)  # type: ignore[arg-type]  # mask is optional
    with pytest.raises(AppError, match="image is missing"):
        client.predict(image=None, mask=None, **arguments)


def square_picture(path: Path) -> str:
    image = Image.new("RGB", (80, 64), "black")
    ImageDraw.Draw(image).rectangle((20, 16, 59, 47), fill="white")
    return save_png(image, path)


def test_canny_endpoint_returns_the_edge_map(client: Client, tmp_path: Path) -> None:
    edges_path = client.predict(
        image=handle_file(square_picture(tmp_path / "square.png")), low_threshold=100, high_threshold=200,
        api_name="/canny",
    )  # fmt: skip
    with Image.open(edges_path) as edges:
        gray = edges.convert("L")
    assert gray.size == (80, 64)
    assert max(gray.getpixel((x, 30)) for x in range(18, 23)) == 255, "the square's left side"
    assert gray.getpixel((40, 30)) == 0 and gray.getpixel((2, 2)) == 0
    assert set(np.unique(np.asarray(gray)).tolist()) == {0, 255}, "lossless: edges are pure white on black"


def test_controlnet_endpoint_returns_images_and_the_edge_map(client: Client, tmp_path: Path) -> None:
    gallery, seeds, parameters, _notes = client.predict(
        image=handle_file(square_picture(tmp_path / "square.png")), prompt="a box", negative_prompt="",
        sampler="Euler", steps=3, guidance_scale=7, low_threshold=100, high_threshold=200, conditioning_scale=0.8,
        guidance_start=0, guidance_end=1, seed=6, batch_size=1, preprocessor="canny", width=80, height=64,
        api_name="/controlnet",
    )  # fmt: skip
    assert seeds == "6"
    assert [item["caption"] for item in gallery] == ["Seed 6", "Canny edges"]
    assert "Weight: 0.8" in parameters
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (80, 64)


def test_compare_endpoint_returns_cells_then_the_grid(client: Client) -> None:
    gallery, grid, diff, _notes = client.predict(
        prompts="a red cat\na blue cat", negative_prompt="", sampler="Euler", steps=3, guidance_scale=7,
        width=64, height=64, seed=9, axis="Steps", axis_values="2, 3", api_name="/compare",
    )  # fmt: skip
    assert [item["caption"] for item in gallery] == [
        "a red cat · Steps: 2", "a blue cat · Steps: 2", "a red cat · Steps: 3", "a blue cat · Steps: 3",
    ]  # fmt: skip
    with Image.open(grid) as image:
        assert image.width > 2 * 64 and image.height > 2 * 64
        assert read_metadata(image).parameters is not None
    assert "<mark>red</mark>" in diff and "<mark>blue</mark>" in diff


def test_compare_saves_and_offers_its_cells_and_grid_as_jpeg(client: Client, served_studio: Studio) -> None:
    gallery, grid, _diff, _notes = client.predict(
        prompts="a jpeg of a plum\na jpeg of a pear", negative_prompt="", sampler="Euler", steps=2,
        guidance_scale=7, width=64, height=64, seed=2718, axis="None", axis_values="", image_format="jpeg",
        api_name="/compare",
    )  # fmt: skip
    for path in [item["image"] for item in gallery] + [grid]:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert read_metadata(image).parameters is not None, "the parameters in EXIF"
    outputs = served_studio.settings.outputs
    assert outputs is not None
    assert len(list((outputs / "compare").rglob("*-2718.jpg"))) == 2
    assert len(list((outputs / "compare").rglob("*-2718-grid.jpg"))) == 1


def test_styles_reach_every_prompt_through_the_endpoints(client: Client) -> None:
    """Styles apply to the prompt of a generation tab and to each prompt of Compare (the parameters text holds the
    prompts as drawn); an unknown one is a message."""
    _gallery, _seeds, parameters, _notes = client.predict(
        prompt="a cat", negative_prompt="dogs", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
        seed=3, batch_size=1, styles=["Pixel art"], api_name="/txt2img",
    )  # fmt: skip
    assert parameters.startswith("pixel art of a cat, 16-bit, limited palette, crisp pixels\nNegative prompt: dogs, ")
    gallery, _grid, diff, _notes = client.predict(
        prompts="a red cat\na blue cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7,
        width=64, height=64, seed=9, axis="None", axis_values="", styles=["Line art"], api_name="/compare",
    )  # fmt: skip
    assert [item["caption"] for item in gallery] == [
        "line art of a red cat, black ink on white, clean outlines",
        "line art of a blue cat, black ink on white, clean outlines",
    ]
    assert "<mark>red</mark>" in diff
    with pytest.raises(AppError, match="unknown style 'Noir'; the styles in styles.csv are: Photograph"):
        client.predict(
            prompt="a cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
            seed=3, batch_size=1, styles=["Noir"], api_name="/txt2img",
        )  # fmt: skip


def test_compare_endpoint_takes_a_column_axis(client: Client) -> None:
    gallery, _grid, _diff, _notes = client.predict(
        prompts="a cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
        seed=9, axis="Steps", axis_values="2, 3", column_axis="Sampler", column_values="Euler, DDIM",
        api_name="/compare",
    )  # fmt: skip
    assert [item["caption"] for item in gallery] == [
        "a cat · Steps: 2 · Sampler: Euler", "a cat · Steps: 2 · Sampler: DDIM",
        "a cat · Steps: 3 · Sampler: Euler", "a cat · Steps: 3 · Sampler: DDIM",
    ]  # fmt: skip


def test_compare_endpoint_explains_bad_axis_values(client: Client) -> None:
    with pytest.raises(AppError, match="Steps values must be numbers separated by commas"):
        client.predict(
            prompts="a cat\na dog", negative_prompt="", sampler="Euler", steps=3, guidance_scale=7, width=64,
            height=64, seed=9, axis="Steps", axis_values="2, lots", api_name="/compare",
        )  # fmt: skip


def test_every_gpu_event_waits_in_one_queue(served_studio: Studio) -> None:
    from studio.ui import create_demo

    demo = create_demo(served_studio)
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("txt2img", "img2img", "inpaint", "controlnet", "compare", "trajectory", "sampler_race"):
        assert by_name[name].concurrency_id == "gpu", name
        assert by_name[name].concurrency_limit == 1, name
    assert by_name["canny"].concurrency_id != "gpu", "the edge preview is CPU work outside the GPU queue"
    assert demo._queue.max_size == served_studio.settings.max_queue, "an explicit queue size"


GENERATION_ENDPOINTS = ("/txt2img", "/img2img", "/inpaint", "/controlnet", "/compare", "/canny")


def test_generation_endpoints_document_every_parameter(client: Client, served_studio: Studio) -> None:
    """The API page shows each endpoint's description, and MCP tool descriptions are made from the same
    docstrings (parsed by Gradio's own reader): every parameter must be explained there."""
    from gradio.utils import get_function_description

    from studio.ui import create_demo

    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    functions = {f"/{fn.api_name}": fn.fn for fn in create_demo(served_studio).fns.values() if fn.api_name}
    for name in GENERATION_ENDPOINTS:
        assert len(api[name]["description"]) > 20, name
        description, parameters, returns = get_function_description(functions[name])
        assert description == api[name]["description"]
        for parameter in ENDPOINT_PARAMETERS[name]:
            assert len(parameters.get(parameter, "")) > 10, f"{name}: {parameter} is not documented"
        assert returns, f"{name}: what it returns is not documented"


def test_images_come_as_webp_with_the_parameters_in_exif(client: Client, served_studio: Studio) -> None:
    gallery, _, parameters, _ = client.predict(
        prompt="a webp of a plum", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64,
        height=64, seed=1618, batch_size=1, image_format="webp", api_name="/txt2img",
    )  # fmt: skip
    with Image.open(gallery[0]["image"]) as image:
        assert image.format == "WEBP"
        assert read_metadata(image).parameters_text == parameters
    outputs = served_studio.settings.outputs
    assert outputs is not None
    assert list(outputs.rglob("*-1618.webp")), "saved in the chosen format too"
    with pytest.raises(AppError, match="not in the list of choices"):  # the Radio says which formats exist
        client.predict(
            prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64, seed=1,
            batch_size=1, image_format="gif", api_name="/txt2img",
        )  # fmt: skip
