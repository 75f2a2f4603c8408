"""The ``/txt2img`` endpoint through gradio_client, against the app launched in-process on loopback."""

from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from studio.metadata import read_metadata

TXT2IMG_PARAMETERS = [
    "prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "width", "height", "seed", "batch_size",
]  # fmt: skip


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False)


def test_endpoint_parameters_have_the_documented_names(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    endpoint = api["named_endpoints"]["/txt2img"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == TXT2IMG_PARAMETERS
    assert endpoint["returns"][0]["component"] == "Gallery"
    assert set(api["named_endpoints"]) == {"/txt2img"}, "helpers (stop, select, seed buttons) stay private"


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
