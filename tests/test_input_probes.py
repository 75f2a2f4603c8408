"""An outsider's probes of the inputs (issue 30, points 1-3 and 11), each answered with a message that names the
input and the fix, never a bare error, a 500 or a server path.

Values JSON can carry but gradio_client cannot send (``NaN``, ``Infinity``) go over raw HTTP: ``POST
/gradio_api/call/<name>``, then the answer is read from the event stream. The rows of "Probes and their answers" in
docs/SECURITY.md are these tests.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from studio.composition import Studio

ROOT = Path(__file__).resolve().parent.parent
NAN, INFINITY = float("nan"), float("inf")
TEXT = {"prompt": "a cat", "prompts": "a cat", "negative_prompt": "", "axis_values": ""}


@pytest.fixture(scope="module")
def api_info(server: str) -> dict[str, Any]:
    return httpx.get(server + "gradio_api/info").json()["named_endpoints"]


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False)


def values(api_info: dict[str, Any], endpoint: str, **given: Any) -> list[Any]:
    """Every value ``endpoint`` takes, in order: ``given``, else the documented default (a small, fast job)."""
    small = {"steps": 2, "width": 64, "height": 64, **TEXT}
    data = []
    for parameter in api_info[endpoint]["parameters"]:
        name = parameter["parameter_name"]
        default = parameter["parameter_default"] if parameter["parameter_has_default"] else None
        data.append(given[name] if name in given else small.get(name, default))
    return data


def call(server: str, endpoint: str, data: list[Any]) -> tuple[str, Any]:
    """Call ``endpoint`` over raw HTTP (``NaN`` and ``Infinity`` written as JSON parsers read them) and return the
    event stream's last event and its data."""
    body = json.dumps({"data": data})  # allow_nan: NaN, Infinity and -Infinity as bare words
    with httpx.Client(base_url=server, timeout=120) as http:
        started = http.post(f"gradio_api/call{endpoint}", content=body, headers={"content-type": "application/json"})
        assert started.status_code == 200, started.text
        stream = http.get(f"gradio_api/call{endpoint}/{started.json()['event_id']}").text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.MULTILINE)
    kind, payload = events[-1]
    return kind, json.loads(payload)


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, format="PNG")  # noise: the pixel data is most of it
    return buffer.getvalue()


# --- 1. NaN, infinity and wrong types through the Gradio API ------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "name", "value", "message"),
    [
        ("/txt2img", "steps", NAN, "steps must be a whole number, got NaN; try 25"),
        ("/txt2img", "width", NAN, "width must be a whole number, got NaN; try 64"),
        ("/txt2img", "batch_size", NAN, "batch_size must be a whole number, got NaN; try 1"),
        ("/txt2img", "seed", NAN, "seed must be a whole number, got NaN; try -1"),
        ("/txt2img", "seed", INFINITY, "seed must be a whole number, got Infinity; try -1"),
        ("/txt2img", "guidance_scale", "nan", "guidance_scale must be a number, got 'nan'; try 7"),
        ("/txt2img", "guidance_scale", "inf", "guidance_scale must be a number, got 'inf'; try 7"),
        ("/txt2img", "guidance_scale", -INFINITY, "guidance_scale must be a number, got -Infinity; try 7"),
        ("/txt2img", "prompt", ["a", "b"], "prompt must be text, got a list; send it as a string"),
        ("/txt2img", "prompt", {"a": 1}, r"prompt must be text, got an object \(dict\); send it as a string"),
        ("/txt2img", "prompt", 5, "prompt must be text, got 5; send it as a string"),
        ("/txt2img", "steps", "20", "steps must be a whole number, got '20'; send 20 as a number, without quotes"),
        ("/txt2img", "steps", 2.5, "steps must be a whole number, got 2.5; try 2"),
        ("/txt2img", "steps", 100_000, r"steps must be between 1 and \d+, got 100000"),
        ("/txt2img", "tiling", "yes", "tiling must be true or false, got 'yes'"),
        ("/txt2img", "sampler", 5, "sampler: 5 is not in the list of choices; choose one of: 'DPM"),
        ("/img2img", "strength", NAN, "strength must be a number, got NaN; try 0.75"),
        (
            "/img2img",
            "image",
            "abc",
            "image must be an image file, got 'abc'; send it with gradio_client's handle_file",
        ),
        ("/inpaint", "mask_blur", INFINITY, "mask_blur must be a whole number, got Infinity; try 4"),
        ("/inpaint", "negative_prompt", [1], "negative_prompt must be text, got a list"),
        ("/controlnet", "conditioning_scale", NAN, "conditioning_scale must be a number, got NaN; try 1"),
        ("/controlnet", "seed", "xyz", "seed must be a whole number, got 'xyz'; try -1"),
        ("/canny", "low_threshold", NAN, "low_threshold must be a whole number, got NaN; try 100"),
        ("/compare", "prompts", {"x": 1}, "prompts must be text, got an object"),
        ("/compare", "axis_values", NAN, "axis_values must be text, got NaN"),
        ("/forward_process", "timestep", NAN, "timestep must be a whole number, got NaN; try 250"),
        ("/forward_process_latent", "seed", INFINITY, "seed must be a whole number, got Infinity; try 0"),
        ("/trajectory", "every", NAN, "every must be a whole number, got NaN; try 5"),
        ("/sampler_race", "eta", "inf", "eta must be a number, got 'inf'; try 0"),
        ("/sampler_race", "samplers", "Euler", "samplers must be a list of choices from: 'DPM"),
        ("/png_info", "image", 7, "image must be an image file, got 7"),
    ],
)
def test_raw_http_values_get_a_message_naming_the_input_and_the_fix(
    server: str, api_info: dict[str, Any], endpoint: str, name: str, value: Any, message: str
) -> None:
    kind, payload = call(server, endpoint, values(api_info, endpoint, **{name: value}))
    assert kind == "error"
    assert payload["error"] is not None and re.search(message, payload["error"]), payload


def test_too_few_values_say_which_the_endpoint_takes(server: str) -> None:
    kind, payload = call(server, "/txt2img", ["a cat", "", "Euler", 2, 7, 64, 64, 1, 1])
    assert kind == "error"
    assert re.match(
        r"/txt2img takes \d+ values, in this order: prompt, negative_prompt, sampler, steps", payload["error"]
    )
    assert "got 9" in payload["error"]


def test_gradio_client_strings_for_numbers_get_the_message_not_the_upstream_error(client: Client) -> None:
    common = {"prompt": "a cat", "negative_prompt": "", "api_name": "/txt2img"}
    for given, message in [
        ({"steps": "abc"}, "steps must be a whole number, got 'abc'; try 25"),
        ({"width": "sixty-four"}, "width must be a whole number, got 'sixty-four'; try 64"),
        ({"seed": "xyz"}, "seed must be a whole number, got 'xyz'; try -1"),
    ]:
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(**common, **given)


def test_the_values_the_page_sends_still_generate(server: str, api_info: dict[str, Any]) -> None:
    kind, payload = call(server, "/txt2img", values(api_info, "/txt2img", steps=2.0, seed=3, guidance_scale=7))
    assert kind == "complete", payload
    assert "Steps: 2" in payload[2]


# --- 2. A PNG cut short -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_short(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A PNG's first half (its header reads, its pixels do not), and the whole file."""
    whole = png_bytes()
    folder = tmp_path_factory.mktemp("truncated")
    (folder / "half.png").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.png").write_bytes(whole)
    return str(folder / "half.png"), str(folder / "whole.png")


@pytest.mark.parametrize(
    ("endpoint", "what"),
    [
        ("/img2img", "image"),
        ("/inpaint", "image"),
        ("/inpaint", "mask"),
        ("/controlnet", "control image"),
        ("/canny", "control image"),
        ("/compare", "source image"),
        ("/forward_process", "picture x₀"),
    ],
)
def test_a_png_cut_short_is_explained_on_every_image_input(
    client: Client, cut_short: tuple[str, str], endpoint: str, what: str
) -> None:
    half, whole = (handle_file(path) for path in cut_short)
    given: dict[str, Any] = {"image": half}
    if endpoint == "/inpaint":
        background = half if what == "image" else whole
        given = {"image": {"background": background, "layers": [], "composite": None}}
        given["mask"] = half if what == "mask" else whole
    if endpoint == "/compare":
        given.update({"prompts": "a cat", "negative_prompt": "", "axis_values": ""})
    elif endpoint not in ("/canny", "/forward_process"):
        given.update({"prompt": "a cat", "negative_prompt": ""})
    with pytest.raises(AppError, match=f"The {what} could not be read to its end: the file is cut short or damaged"):
        client.predict(api_name=endpoint, **given)


def test_png_info_explains_a_png_cut_short_too(client: Client, cut_short: tuple[str, str]) -> None:
    with pytest.raises(AppError, match="not an image the studio can read"):
        client.predict(image=handle_file(cut_short[0]), api_name="/png_info")


# --- 3. A body the JSON parser cannot read (REST) ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ('{"prompt": ' + "[" * 5000 + "]" * 5000 + ', "steps": 2}').encode(),  # deeper than the parser goes
        b'{"prompt": "\xff\xfe"}',  # not UTF-8
    ],
    ids=["nested-5000-deep", "not-utf8"],
)
def test_a_body_the_parser_cannot_read_is_the_clients_error(server: str, body: bytes) -> None:
    response = httpx.post(
        server + "sdapi/v1/txt2img", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "detail": "The request body could not be read as JSON (malformed, not UTF-8, or nested too deeply); send one "
        "JSON object with the documented fields (see /docs).",
        "error": "invalid request",
    }


def test_malformed_json_says_where_the_parser_stopped(server: str) -> None:
    response = httpx.post(
        server + "sdapi/v1/txt2img", content=b'{"prompt": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "the request body is not valid JSON (Expecting value at character 11)"


# --- 11. Names, not paths; masks of another size ------------------------------------------------------------


def test_the_page_and_the_api_docs_carry_no_server_path(server: str, served_studio: Studio, tiny_model: Path) -> None:
    config = httpx.get(server + "config").text
    assert str(tiny_model) not in config, "the model picker's values are names"
    assert json.loads(config) and '"tiny-sd"' in config
    info = httpx.get(server + "gradio_api/info").json()
    for endpoint, described in info["named_endpoints"].items():
        for parameter in described["parameters"]:
            default = json.dumps(parameter["parameter_default"])
            assert '"path"' not in default and "/tmp" not in default, (endpoint, parameter["parameter_name"])


def test_docs_say_a_mask_of_another_size_is_resized_as_the_code_does() -> None:
    security = (ROOT / "docs" / "SECURITY.md").read_text()
    assert "masks (empty, other size, not binary)" not in security, "masks of another size are not refused"
    assert "a mask of another size is stretched to the picture's size, as A1111 does" in security


def test_a_model_outside_the_models_folder_is_offered_and_switched_to_by_name(studio: Studio, tiny_model: Path) -> None:
    options, value = studio.system.choices()
    assert value == "tiny-sd" and ("tiny-sd", "tiny-sd") in options
    assert all(str(tiny_model.parent) not in choice for _, choice in options)
    assert studio.system.switch("tiny-sd").source == str(tiny_model), "the name maps back to the model's source"
