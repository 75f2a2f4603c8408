"""The REST API and the MCP server as their clients meet them on a studio with passwords: who may call, each
user's own progress and Stop, the ``webuiapi`` package from PyPI, and an MCP client calling the txt2img tool."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx
import pytest
import webuiapi
from gradio_client import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from studio.composition import Studio, build_studio
from studio.metadata import read_metadata
from studio.ui import create_demo, launch
from tests.a1111_helpers import TIMEOUT, decoded, info_of, square_picture
from tests.conftest import make_settings

ANN = ("ann", "pw-ann")
BOB = ("bob", "pw-bob")
SMALL = {"steps": 3, "width": 64, "height": 64, "cfg_scale": 7, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def locked(tiny_model: Path, tiny_controlnet: Path) -> Iterator[tuple[str, Studio]]:
    """The studio with two users, previews every 2 steps and the MCP server on."""
    settings = make_settings(
        tiny_model, None, auth=(ANN, BOB), mcp=True, preview_every=2, controlnet_model=str(tiny_controlnet)
    )
    studio = build_studio(settings)
    demo: gr.Blocks = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{settings.port}/", studio
    demo.close()


ROUTES = [
    ("GET", "sdapi/v1/sd-models"),
    ("GET", "sdapi/v1/loras"),
    ("POST", "sdapi/v1/refresh-loras"),
    ("GET", "sdapi/v1/samplers"),
    ("GET", "sdapi/v1/schedulers"),
    ("GET", "sdapi/v1/options"),
    ("POST", "sdapi/v1/options"),
    ("GET", "sdapi/v1/progress"),
    ("POST", "sdapi/v1/interrupt"),
    ("GET", "sdapi/v1/memory"),
    ("POST", "sdapi/v1/png-info"),
    ("POST", "sdapi/v1/txt2img"),
    ("POST", "sdapi/v1/img2img"),
    ("GET", "controlnet/model_list"),
    ("GET", "controlnet/module_list"),
    ("GET", "openapi.json"),
    ("GET", "docs"),
    ("GET", "gradio_api/mcp/schema"),
    ("POST", "gradio_api/mcp/"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_a_user(locked: tuple[str, Studio], method: str, route: str) -> None:
    url = locked[0] + route
    for auth in (None, ("ann", "wrong"), ("eve", "pw-ann")):
        response = httpx.request(method, url, json={}, auth=auth, timeout=TIMEOUT)
        assert response.status_code == 401, (route, auth)
        assert response.headers["www-authenticate"].startswith("Basic"), "browsers and clients are asked"
        assert "ann" not in response.text and "sdapi" not in response.text
    if method == "GET" and not route.startswith("gradio_api"):
        assert httpx.get(url, auth=BOB, timeout=TIMEOUT).status_code == 200, route


def test_the_page_login_cookie_is_accepted_too(locked: tuple[str, Studio]) -> None:
    with httpx.Client(base_url=locked[0]) as browser:
        assert browser.post("login", data={"username": ANN[0], "password": ANN[1]}).status_code == 200
        assert browser.get("sdapi/v1/options").status_code == 200
    assert httpx.get(locked[0] + "sdapi/v1/options").status_code == 401


@contextmanager
def paused_at_step(studio: Studio, step: int) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the next generation inside its ``step``-th denoising step (the UNet's ``step``-th call: one call per
    step with CFG) until ``release`` is set; ``reached`` says it got there. No sleeps: the test waits on events."""
    unet = studio.manager.current().pipeline.unet
    original = unet.forward
    reached, release = threading.Event(), threading.Event()
    calls = 0

    def forward(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == step:
            reached.set()
            release.wait(timeout=120)
        return original(*args, **kwargs)

    unet.forward = forward
    try:
        yield reached, release
    finally:
        release.set()
        del unet.forward


def test_progress_during_a_job_and_stop_for_its_owner_only(locked: tuple[str, Studio]) -> None:
    url, studio = locked
    body = {"prompt": "a red house", "seed": 3, **SMALL, "steps": 4}
    with ThreadPoolExecutor(max_workers=1) as pool:
        with paused_at_step(studio, step=4) as (reached, release):  # steps 1-3 done, a preview after step 2
            running = pool.submit(httpx.post, url + "sdapi/v1/txt2img", json=body, auth=ANN, timeout=TIMEOUT)
            assert reached.wait(timeout=120)
            mine = httpx.get(url + "sdapi/v1/progress", auth=ANN).json()
            assert mine["state"]["sampling_step"] == 3 and mine["state"]["sampling_steps"] == 4
            assert mine["state"]["job_count"] == 1 and re.fullmatch(r"task\(txt2img-[0-9a-f]+\)", mine["current_task"])
            assert mine["progress"] == pytest.approx(0.75) and mine["eta_relative"] >= 0
            assert decoded(mine["current_image"]).size == (64, 64), "the live preview"
            assert (
                httpx.get(url + "sdapi/v1/progress?skip_current_image=true", auth=ANN).json()["current_image"] is None
            )
            theirs = httpx.get(url + "sdapi/v1/progress", auth=BOB).json()
            assert theirs["state"]["job"] == "" and theirs["current_image"] is None, "bob sees none of ann's job"
            assert httpx.post(url + "sdapi/v1/interrupt", auth=BOB).json() == {"interrupted": False}
            release.set()
            finished = running.result()
        assert finished.status_code == 200 and len(finished.json()["images"]) == 1, "bob's Stop left it alone"
        assert info_of(finished)["interrupted"] is False

        with paused_at_step(studio, step=2) as (reached, release):
            running = pool.submit(
                httpx.post, url + "sdapi/v1/txt2img", json={**body, "n_iter": 2}, auth=ANN, timeout=TIMEOUT
            )
            assert reached.wait(timeout=120)
            assert httpx.post(url + "sdapi/v1/interrupt", auth=ANN).json() == {"interrupted": True}
            assert httpx.get(url + "sdapi/v1/progress", auth=ANN).json()["state"]["interrupted"] is True
            release.set()
            stopped = running.result()
    assert stopped.status_code == 200, "as A1111: an interrupted request still answers"
    assert stopped.json()["images"] == [] and info_of(stopped)["interrupted"] is True, "nothing of it is kept"
    after = httpx.post(url + "sdapi/v1/txt2img", json=body, auth=ANN, timeout=TIMEOUT)
    assert len(after.json()["images"]) == 1, "the next job is not stopped by the last one's Stop"
    assert httpx.get(url + "sdapi/v1/progress", auth=ANN).json()["state"]["job_count"] == 0


def test_rest_and_ui_requests_at_once_share_the_gpu(locked: tuple[str, Studio]) -> None:
    url = locked[0]
    client = Client(url, auth=ANN, verbose=False)
    ui = dict(prompt="a cat", negative_prompt="", sampler="Euler", steps=3, guidance_scale=7, width=64, height=64)
    with ThreadPoolExecutor(max_workers=4) as pool:
        rest = [
            pool.submit(httpx.post, url + "sdapi/v1/txt2img", json={"prompt": "a cat", "seed": s, **SMALL}, auth=BOB,
                        timeout=TIMEOUT)
            for s in (1, 2)
        ]  # fmt: skip
        gradio = [pool.submit(client.predict, **ui, seed=s, batch_size=1, api_name="/txt2img") for s in (1, 2)]
        rest_images = [decoded(job.result().json()["images"][0]) for job in rest]
        ui_images = [Image.open(job.result()[0][0]["image"]) for job in gradio]
    for a, b in zip(rest_images, ui_images, strict=True):
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes(), "same seed, same image, however busy"


def test_webuiapi_from_pypi_as_a_real_client(locked: tuple[str, Studio]) -> None:
    url, _studio = locked
    api = webuiapi.WebUIApi(
        host="127.0.0.1", port=int(url.rsplit(":", 1)[1].strip("/")), sampler="Euler a", steps=3,
        username=ANN[0], password=ANN[1],
    )  # fmt: skip
    result = api.txt2img(prompt="a blue sea", negative_prompt="text", seed=5, width=64, height=64, batch_size=2)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [5, 6] and result.parameters["prompt"] == "a blue sea"
    assert read_metadata(result.image).parameters.fields["Sampler"] == "Euler a"

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    edited = api.img2img(
        images=[result.image], mask_image=mask, inpaint_full_res=False, denoising_strength=0.6, seed=7, width=64,
        height=64, prompt="a boat",
    )  # fmt: skip
    assert edited.image.size == (64, 64) and edited.info["seed"] == 7

    unit = webuiapi.ControlNetUnit(
        image=square_picture(), module="canny", model="None", threshold_a=100, threshold_b=200
    )
    guided = api.txt2img(prompt="a box", seed=9, width=64, height=64, controlnet_units=[unit])
    assert len(guided.images) == 2, "the image, then the edge map"

    # alwayson_scripts given: webuiapi's default dict is shared between calls and still holds the unit above.
    fixed = api.txt2img(prompt="a hill", seed=3, width=64, height=64, enable_hr=True, hr_scale=1.5, alwayson_scripts={})
    assert fixed.image.size == (96, 96) and "Hires upscaler: Latent" in fixed.info["infotexts"][0]

    assert api.util_get_model_names() == ["tiny-sd"] and api.util_get_current_model() == "tiny-sd"
    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    assert api.controlnet_module_list() == ["canny", "none"]
    assert api.get_progress()["state"]["job_count"] == 0
    assert api.interrupt() == {"interrupted": False}
    info = api.png_info(result.image)
    assert info.parameters["Seed"] == "5"


async def mcp_session(url: str) -> tuple[list[object], object, object, object]:
    """List the tools and call txt2img over MCP's streamable HTTP transport, logged in as ann."""
    async with (
        httpx.AsyncClient(auth=ANN, timeout=TIMEOUT) as http,
        streamable_http_client(url + "gradio_api/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = (await session.list_tools()).tools
        arguments = {"prompt": "a green tree", "sampler": "Euler", "steps": 3, "width": 64, "height": 64, "seed": 11}
        called = await session.call_tool("txt2img", arguments)
        refused = await session.call_tool("txt2img", {**arguments, "width": 100})
        fixed = await session.call_tool("txt2img", {**arguments, "hires_scale": 1.5})
        return tools, called, refused, fixed


def test_an_mcp_client_lists_and_calls_the_txt2img_tool(locked: tuple[str, Studio]) -> None:
    # A thread of its own: the Playwright tests' session-wide browser keeps an event loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as apart:
        tools, called, refused, fixed = apart.submit(asyncio.run, mcp_session(locked[0])).result()
    by_name = {tool.name: tool for tool in tools}  # type: ignore[attr-defined]
    assert list(by_name) == ["txt2img"], "the tabs' endpoints (gallery + state outputs) are not offered as tools"
    tool = by_name["txt2img"]
    assert tool.description.startswith("Generate an image from a text prompt")  # type: ignore[attr-defined]
    properties = tool.inputSchema["properties"]  # type: ignore[attr-defined]
    assert all(spec.get("description") for spec in properties.values()), "every parameter is described"
    assert called.isError is False  # type: ignore[attr-defined]
    kinds = [item.type for item in called.content]  # type: ignore[attr-defined]
    assert kinds[0] == "image"
    image = Image.open(io.BytesIO(base64.b64decode(called.content[0].data)))  # type: ignore[attr-defined]
    assert image.size == (64, 64)
    texts = " ".join(item.text for item in called.content if item.type == "text")  # type: ignore[attr-defined]
    assert "Seed: 11" in texts and "Steps: 3" in texts
    assert refused.isError is True  # type: ignore[attr-defined]
    assert "width must be a multiple of 8, got 100" in refused.content[0].text  # type: ignore[attr-defined]
    upscaled = Image.open(io.BytesIO(base64.b64decode(fixed.content[0].data)))  # type: ignore[attr-defined]
    assert upscaled.size == (96, 96), "hires_scale 1.5: the hires fix"
