"""Every named endpoint needs only its real inputs (a prompt, and an image where the task takes one): gradio_client
and MCP see a natural default for everything else, "" for every text a person may leave empty."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from studio.composition import build_studio
from studio.ui import create_demo, launch
from tests.conftest import make_settings
from tests.test_api import ENDPOINT_PARAMETERS, save_png

REAL_INPUTS = {"prompt", "prompts", "image"}


@pytest.fixture(scope="module")
def client(tiny_model: Path, tiny_controlnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The studio with its usual widgets, its steps capped at 5 (``--max-steps``) so that every endpoint's own
    defaults, the Lab's sampler race among them, make a quick job."""
    settings = make_settings(
        tiny_model, tmp_path_factory.mktemp("defaults-outputs"), controlnet_model=str(tiny_controlnet), max_steps=5
    )
    studio = build_studio(settings)
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://{settings.host}:{settings.port}/", verbose=False)
    demo.close()


def test_only_the_real_inputs_are_required(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    for name, endpoint in api["named_endpoints"].items():
        required = {p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]}
        assert required <= REAL_INPUTS, f"{name} requires {sorted(required - REAL_INPUTS)}"
        defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoint["parameters"]}
        for text in ("negative_prompt", "axis_values", "column_values"):
            if text in defaults:
                assert defaults[text] == "", f"{name}: {text} defaults to empty"


def _picture(tmp_path: Path) -> str:
    return save_png(Image.new("RGB", (64, 64), (30, 60, 90)), tmp_path / "picture.png")


def _painted(tmp_path: Path) -> dict[str, Any]:
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((16, 16, 48, 48), fill=(0, 0, 0, 255))
    stroke = save_png(layer, tmp_path / "stroke.png")
    return {"background": handle_file(_picture(tmp_path)), "layers": [handle_file(stroke)], "composite": None}


ONLY_WHAT_IT_NEEDS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "/txt2img": lambda _: {"prompt": "a cat"},
    "/img2img": lambda tmp: {"image": handle_file(_picture(tmp)), "prompt": "a cat"},
    "/inpaint": lambda tmp: {"image": _painted(tmp), "prompt": "a cat"},
    "/canny": lambda tmp: {"image": handle_file(_picture(tmp))},
    "/controlnet": lambda tmp: {"image": handle_file(_picture(tmp)), "prompt": "a cat"},
    "/compare": lambda _: {"prompts": "a cat\na dog"},
    "/forward_process": lambda _: {},
    "/forward_process_latent": lambda _: {},
    "/trajectory": lambda _: {"prompt": "a cat"},
    "/sampler_race": lambda _: {"prompt": "a cat"},
    "/png_info": lambda tmp: {"image": handle_file(_picture(tmp))},
}


def test_every_named_endpoint_is_covered() -> None:
    assert set(ONLY_WHAT_IT_NEEDS) == set(ENDPOINT_PARAMETERS)


@pytest.mark.parametrize("endpoint", sorted(ONLY_WHAT_IT_NEEDS))
def test_a_call_with_only_the_real_inputs_works(client: Client, endpoint: str, tmp_path: Path) -> None:
    result = client.predict(**ONLY_WHAT_IT_NEEDS[endpoint](tmp_path), api_name=endpoint)
    outputs = result if isinstance(result, tuple | list) else (result,)
    assert any(outputs), f"{endpoint} answered nothing: {result!r}"
