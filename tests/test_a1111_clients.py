"""The REST API and the MCP server as their clients meet them on a studio with passwords: who may call, each
user's own progress and Stop, the ``webuiapi`` package from PyPI, and an MCP client calling the txt2img tool."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import numpy as np
import pytest
import sd_backend_client as sbc
import webuiapi
from gradio_client import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image
from sd_backend_client.api.webui.response_formats import GenerationInfoData

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

    titles = api.util_get_model_names()
    assert [title.split(" [")[0] for title in titles] == ["tiny-sd"] and api.util_get_current_model() == titles[0]
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


# The README's table of client x capability: each cell is done through the published client. A "yes" must work; a
# "no" must fail with the studio's 404 or 422 (or the client's own refusal of what the server does not list).
README = Path(__file__).resolve().parents[1] / "README.md"
WEBUIAPI, SD_BACKEND_CLIENT = "webuiapi", "sd-backend-client"
CLIENT_NAMES = (WEBUIAPI, SD_BACKEND_CLIENT)
NOT_OFFERED = re.compile(r"404|422|Not Found|does not support it")


def readme_table() -> dict[tuple[str, str], str]:
    """(capability, client) -> "yes", "no" or "n/a", from the README's "### Clients" table."""
    section = README.read_text().split("### Clients", 1)[1].split("\n#", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    header, body = [cell.strip() for cell in rows[0]], rows[1:]
    assert header[1:] == list(CLIENT_NAMES), header
    return {
        (cells[0].strip(), client): cells[index + 1].strip()
        for cells in body
        for index, client in enumerate(CLIENT_NAMES)
    }


@dataclass
class Clients:
    """The two clients, logged in as ann, and what the checks need of the server."""

    url: str
    studio: Studio
    webui: webuiapi.WebUIApi
    backend: sbc.A1111Webservice


Check = Callable[[Clients], None]
CHECKS: dict[tuple[str, str], Check] = {}


def check(capability: str, client: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[(capability, client)] = function
        return function

    return register


def half_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    return mask


def params(**fields: object) -> sbc.DiffusionRequestBody:
    """A small request as sd-backend-client builds it (its own defaults for everything else)."""
    base: dict[str, Any] = {
        "prompt": "a red house", "steps": 3, "width": 64, "height": 64, "seed": 5, "sampler": "euler",
        "scheduler": "automatic",
    }  # fmt: skip
    return sbc.DiffusionRequestBody(**{**base, **fields})


def finished(handle: sbc.GenerationHandle) -> sbc.GenerationResult:
    result = handle.wait(timeout=120)
    assert isinstance(result.raw_info, GenerationInfoData), "the client kept the whole answer"
    return result


def canny_unit(clients: Clients) -> sbc.ControlNetUnit:
    model = clients.backend.list_controlnet_models()[0]
    canny = next(item for item in clients.backend.get_controlnet_preprocessors() if item.name == "canny")
    return sbc.ControlNetUnit(model=model, preprocessor=sbc.PreprocessorParams(typedef=canny), image=square_picture())


def small(**fields: object) -> dict[str, object]:
    """webuiapi's arguments for a small job, with an ``alwayson_scripts`` of its own (webuiapi's default dict is
    shared between calls and keeps the ControlNet units of earlier ones)."""
    return {"width": 64, "height": 64, "seed": 5, "steps": 3, "alwayson_scripts": {}, **fields}


@check("Connect and discover (options, scripts, capabilities)", WEBUIAPI)
def _(clients: Clients) -> None:
    assert clients.webui.get_options()["sd_model_hash"]
    assert clients.webui.get_scripts()["txt2img"] == ["controlnet"]
    assert clients.webui.controlnet_version() == 2 and clients.webui.get_face_restorers() == []


@check("Connect and discover (options, scripts, capabilities)", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    found = sbc.connect_to_backend(clients.url, credentials_provider=lambda: ANN)
    assert isinstance(found, sbc.A1111Webservice)
    capabilities = clients.backend.get_capabilities()
    assert capabilities.controlnet and capabilities.scheduler and not capabilities.interrogate
    assert "Latent" in clients.backend.get_latent_upscale_modes()
    assert clients.backend.get_controlnet_version() == 2 and clients.backend.refresh_checkpoints().ok


@check("Text to image", WEBUIAPI)
def _(clients: Clients) -> None:
    result = clients.webui.txt2img(prompt="a red house", sampler_name="Euler a", batch_size=2, **small())
    assert [image.size for image in result.images] == [(64, 64)] * 2 and result.info["all_seeds"] == [5, 6]


@check("Text to image", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    result = finished(clients.backend.submit_txt2img(params(batch_size=2)))
    assert [image.size for image in result.images] == [(64, 64)] * 2 and result.seeds == [5, 6]


@check("Hires fix", WEBUIAPI)
def _(clients: Clients) -> None:
    result = clients.webui.txt2img(prompt="a hill", enable_hr=True, hr_scale=1.5, **small())
    assert result.image.size == (96, 96)


@check("Hires fix", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    result = finished(clients.backend.submit_txt2img(params(enable_hr=True, hr_scale=1.5)))
    assert result.images[0].size == (96, 96)


@check("Image to image", WEBUIAPI)
def _(clients: Clients) -> None:
    result = clients.webui.img2img(images=[square_picture()], prompt="a box", denoising_strength=0.5, **small())
    assert result.image.size == (64, 64) and result.info["denoising_strength"] == 0.5


@check("Image to image", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    result = finished(clients.backend.submit_img2img(params(init_images=[square_picture()], denoising_strength=0.5)))
    assert result.images[0].size == (64, 64) and result.raw_info.denoising_strength == 0.5  # type: ignore[union-attr]


@check("Inpainting", WEBUIAPI)
def _(clients: Clients) -> None:
    result = clients.webui.img2img(
        images=[square_picture()], mask_image=half_mask(), inpaint_full_res=False, prompt="a boat", **small()
    )
    assert result.image.size == (64, 64) and result.info["is_using_inpainting_conditioning"] is True


@check("Inpainting", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    body = params(init_images=[square_picture()], mask=half_mask(), mask_blur_x=0, mask_blur_y=8)
    result = finished(clients.backend.submit_inpaint(body))
    kept = np.asarray(result.images[0].convert("RGB"))[:, :32]
    assert (kept == np.asarray(square_picture())[:, :32]).all(), "mask_blur_y alone leaves the vertical edge hard"


@check("Inpainting from latent nothing", WEBUIAPI)
def _(clients: Clients) -> None:
    result = clients.webui.img2img(
        images=[square_picture()], mask_image=half_mask(), inpainting_fill=3, inpaint_full_res=False, **small()
    )
    assert "Masked content: latent nothing" in result.info["infotexts"][0]


@check("Inpainting from latent nothing", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    body = params(
        init_images=[square_picture()], mask=half_mask(), inpainting_fill=sbc.InpaintFillOption.LATENT_NOTHING
    )
    result = finished(clients.backend.submit_inpaint(body))
    assert "Masked content: latent nothing" in result.raw_info.infotexts[0]  # type: ignore[union-attr]


@check("ControlNet (Canny) on text to image", WEBUIAPI)
def _(clients: Clients) -> None:
    unit = webuiapi.ControlNetUnit(image=square_picture(), module="canny", model="None")
    result = clients.webui.txt2img(prompt="a box", controlnet_units=[unit], **small())
    assert len(result.images) == 2, "the image, then the edge map"


@check("ControlNet (Canny) on text to image", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    result = finished(clients.backend.submit_txt2img(params(controlnet_units=[canny_unit(clients)])))
    assert len(result.images) == 1 and len(result.control_maps) == 1, "the edge map told apart from the image"


@check("ControlNet on image to image", WEBUIAPI)
def _(clients: Clients) -> None:
    unit = webuiapi.ControlNetUnit(image=square_picture(), module="canny", model="None")
    clients.webui.img2img(images=[square_picture()], controlnet_units=[unit], **small())


@check("ControlNet on image to image", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    body = params(init_images=[square_picture()], controlnet_units=[canny_unit(clients)])
    finished(clients.backend.submit_img2img(body))


def stopped_midway(clients: Clients, start: Callable[[], Any], stop: Callable[[], Any]) -> Any:
    """Start a job, hold it at its second step, ``stop`` it there, and return what ``start`` returned."""
    with ThreadPoolExecutor(max_workers=1) as pool, paused_at_step(clients.studio, step=2) as (reached, release):
        running = pool.submit(start)
        assert reached.wait(timeout=120)
        stopped = stop()
        release.set()
        return running.result(), stopped


@check("Progress while a job runs", WEBUIAPI)
def _(clients: Clients) -> None:
    def start() -> Any:
        return clients.webui.txt2img(prompt="a cat", sampler_name="Euler", **small(steps=4))

    result, seen = stopped_midway(clients, start, clients.webui.get_progress)
    assert seen["state"]["sampling_step"] == 1 and seen["state"]["sampling_steps"] == 4 and result.images


@check("Progress while a job runs", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    with paused_at_step(clients.studio, step=2) as (reached, release):
        handle = clients.backend.submit_txt2img(params(steps=4))
        assert reached.wait(timeout=120)
        seen = handle.poll()
        current = httpx.get(clients.url + "sdapi/v1/progress", auth=ANN).json()["current_task"]
        release.set()
    assert seen.status is sbc.GenerationStatus.ACTIVE and seen.progress == pytest.approx(0.25)
    assert current == handle.task_id, "the client's force_task_id is the job's id"
    assert finished(handle).images


@check("Cancel a running job", WEBUIAPI)
def _(clients: Clients) -> None:
    def start() -> Any:
        return clients.webui.txt2img(prompt="a cat", sampler_name="Euler", **small(steps=4))

    result, answer = stopped_midway(clients, start, clients.webui.interrupt)
    assert answer == {"interrupted": True} and result.images == [] and result.info["interrupted"] is True


@check("Cancel a running job", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    with paused_at_step(clients.studio, step=2) as (reached, release):
        handle = clients.backend.submit_txt2img(params(steps=4))
        assert reached.wait(timeout=120)
        assert handle.cancel()
        release.set()
    with pytest.raises(sbc.GenerationError) as error:
        handle.wait(timeout=120)
    assert error.value.status is sbc.GenerationStatus.CANCELLED, "a cancel, not a failure"


@check("Checkpoint list", WEBUIAPI)
def _(clients: Clients) -> None:
    assert [model["model_name"] for model in clients.webui.get_sd_models()] == ["tiny-sd"]


@check("Checkpoint list", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    [model] = clients.backend.list_checkpoints()
    assert model.name == "tiny-sd" and re.fullmatch(r"tiny-sd \[[0-9a-f]{10}\]", str(model.display_name))


@check("Checkpoint switch", WEBUIAPI)
def _(clients: Clients) -> None:
    clients.webui.util_set_model("tiny-sd")
    assert clients.webui.util_get_current_model().startswith("tiny-sd [")


@check("Checkpoint switch", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    result = finished(clients.backend.submit_txt2img(params(sd_model_name="tiny-sd")))
    assert result.raw_info.sd_model_name == "tiny-sd"  # type: ignore[union-attr]


@check("Samplers and schedulers", WEBUIAPI)
def _(clients: Clients) -> None:
    assert "Euler a" in clients.webui.util_get_sampler_names()
    assert "karras" in clients.webui.util_get_scheduler_names()


@check("Samplers and schedulers", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    assert "euler_ancestral" in [option.name for option in clients.backend.list_samplers()]
    assert "karras" in [option.name for option in clients.backend.list_schedulers()]


@check("LoRA list", WEBUIAPI)
def _(clients: Clients) -> None:
    assert clients.webui.get_loras() == []


@check("LoRA list", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    assert clients.backend.list_loras() == [] and clients.backend.refresh_loras().ok


@check("Prompt styles", WEBUIAPI)
def _(clients: Clients) -> None:
    assert all(style["name"] for style in clients.webui.get_prompt_styles())


@check("Prompt styles", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    assert isinstance(clients.backend.get_styles(), list)


@check("ControlNet models, preprocessors and control types", WEBUIAPI)
def _(clients: Clients) -> None:
    assert clients.webui.controlnet_model_list() == ["tiny-controlnet"]
    assert clients.webui.controlnet_module_list() == ["canny", "none"]


@check("ControlNet models, preprocessors and control types", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    assert [model.full_model_name for model in clients.backend.list_controlnet_models()] == ["tiny-controlnet"]
    canny = next(item for item in clients.backend.get_controlnet_preprocessors() if item.name == "canny")
    assert [parameter.default_value for parameter in canny.parameters if parameter.key.startswith("threshold")] == [
        100,
        200,
    ]
    types = clients.backend.get_controlnet_type_categories()
    assert types["Canny"]["default_option"] == "canny" and types["Canny"]["default_model"] == "tiny-controlnet"


@check("PNG info", WEBUIAPI)
def _(clients: Clients) -> None:
    made = clients.webui.txt2img(prompt="a dog", **small())
    assert clients.webui.png_info(made.image).parameters["Model hash"] == made.info["sd_model_hash"]


@check("Soft inpainting", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    body = params(init_images=[square_picture()], mask=half_mask(), soft_inpainting=True)
    finished(clients.backend.submit_inpaint(body))


@check("Upscalers and upscaling", WEBUIAPI)
def _(clients: Clients) -> None:
    upscalers = clients.webui.get_upscalers()
    assert isinstance(upscalers, list), f"404: {upscalers}"


@check("Upscalers and upscaling", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    finished(clients.backend.submit_upscale(square_picture(), 128, 128))


@check("VAE list", WEBUIAPI)
def _(clients: Clients) -> None:
    vaes = clients.webui.get_sd_vae()
    assert isinstance(vaes, list), f"404: {vaes}"


@check("VAE list", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    clients.backend.list_vaes()


@check("ControlNet preprocessor preview", WEBUIAPI)
def _(clients: Clients) -> None:
    answer = clients.webui.controlnet_detect([square_picture()], module="canny")
    assert "images" in answer, f"404: {answer}"


@check("ControlNet preprocessor preview", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    canny = next(item for item in clients.backend.get_controlnet_preprocessors() if item.name == "canny")
    finished(clients.backend.submit_preprocessor_preview(square_picture(), canny))


@check("Interrogate", WEBUIAPI)
def _(clients: Clients) -> None:
    clients.webui.interrogate(square_picture())


@check("Interrogate", SD_BACKEND_CLIENT)
def _(clients: Clients) -> None:
    clients.backend.interrogate(square_picture())


@pytest.fixture(scope="module")
def clients(locked: tuple[str, Studio]) -> Iterator[Clients]:
    url, studio = locked
    port = int(url.rsplit(":", 1)[1].strip("/"))
    webui = webuiapi.WebUIApi(host="127.0.0.1", port=port, steps=3, username=ANN[0], password=ANN[1])
    backend = sbc.A1111Webservice(url.rstrip("/"), credentials_provider=lambda: ANN)
    yield Clients(url, studio, webui, backend)
    backend.disconnect()


TABLE = readme_table()


def test_the_readme_table_and_the_checks_agree() -> None:
    assert set(TABLE.values()) <= {"yes", "no", "n/a"}
    assert {cell for cell, verdict in TABLE.items() if verdict != "n/a"} == set(CHECKS)


@pytest.mark.parametrize(("capability", "client"), [cell for cell, verdict in TABLE.items() if verdict != "n/a"])
def test_each_client_and_capability_as_the_readme_says(clients: Clients, capability: str, client: str) -> None:
    run = CHECKS[(capability, client)]
    if TABLE[(capability, client)] == "yes":
        run(clients)
    else:
        with pytest.raises((sbc.SDBackendError, RuntimeError, ValueError, AssertionError), match=NOT_OFFERED):
            run(clients)
