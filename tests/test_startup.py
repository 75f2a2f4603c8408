"""The page first, the heavy libraries behind it (``studio/startup.py``): the page is built without torch, and a
request made while the studio loads waits for it (with a progress message) instead of failing.

The load is held behind a ``threading.Event`` gate, so each test decides when it ends; the request is known to be
waiting through the studio's own hooks (``on_wait``, the loader's ``when_done``), never by sleeping.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from studio.composition import Studio, build_studio
from studio.micro.location import MICRO_MODEL
from studio.startup import LOADING_MESSAGE, StartingStudio, StudioLoader, prepare_studio
from studio.styles import StyleLibrary
from studio.ui import create_demo, launch
from studio.ui.header import build_header, model_status
from studio.ui.startup import report_loading
from studio.waiting import WaitingRoom
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "transformers")


def test_the_page_is_built_and_its_modules_import_without_torch() -> None:
    """What ``app.py`` does before it serves the page: the settings, the model choice, the UI modules and the whole
    Blocks page, and none of torch, diffusers or transformers is imported by then."""
    script = """
import json, sys
from studio.settings import Settings
from studio.startup import prepare_studio
from studio.ui import create_demo, launch
import studio.ui.startup, studio.ui.server
demo = create_demo(prepare_studio(Settings.from_cli(["--model", "micro", "--no-save"])))
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "diffusers", "transformers"))))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@dataclass
class Gated:
    """A studio whose load waits for ``gate``, served on loopback, and the hooks that tell a request waits."""

    url: str
    studio: StartingStudio
    gate: threading.Event
    ui_waiting: threading.Event
    rest_waiting: threading.Event


def gated_studio(settings_of: Callable[[], Studio], gate: threading.Event) -> tuple[StartingStudio, threading.Event]:
    built = settings_of()
    ui_waiting = threading.Event()

    def build() -> Studio:
        if not gate.wait(timeout=120):
            raise TimeoutError("the test never opened the gate")
        return built

    def on_wait() -> None:
        report_loading()
        ui_waiting.set()

    source = built.manager.source
    studio = StartingStudio(
        built.settings, StudioLoader(build), source, None, StyleLibrary(None), built.waiting, on_wait
    )
    return studio, ui_waiting


@pytest.fixture
def gated(tiny_model: Path, tmp_path: Path) -> Iterator[Gated]:
    gate = threading.Event()
    studio, ui_waiting = gated_studio(lambda: build_studio(make_settings(tiny_model, tmp_path / "outputs")), gate)
    rest_waiting = threading.Event()
    when_done = studio.loader.when_done

    def observed_when_done(callback: Callable[[], None]) -> None:  # the REST hold waits through it
        when_done(callback)
        rest_waiting.set()

    studio.loader.when_done = observed_when_done  # type: ignore[method-assign]
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    studio.loader.start()
    try:
        yield Gated(f"http://127.0.0.1:{studio.settings.port}/", studio, gate, ui_waiting, rest_waiting)
    finally:
        gate.set()
        demo.close()


def test_the_header_says_the_libraries_load_until_they_have(gated: Gated) -> None:
    with gr.Blocks():
        header = build_header(gated.studio)
    assert LOADING_MESSAGE in header.status.value and header.loading.active, "the timer fills the header later"
    assert LOADING_MESSAGE in model_status(gated.studio)
    (tick,) = (f.fn for f in create_demo(gated.studio).fns.values() if getattr(f.fn, "__name__", "") == "when_loaded")
    assert all(isinstance(update, dict) and update.get("__type__") == "update" for update in tick()), "no change yet"
    gated.gate.set()
    assert gated.studio.loader.wait(timeout=60) is not None
    assert "Loading" not in model_status(gated.studio) and "**Model:**" in model_status(gated.studio)
    picker, _lora, _embedding, status, timer = tick()
    assert picker.choices and "**Model:**" in status, "the header fills its lists and shows the model"
    assert timer.active is False, "and the timer stops"
    with gr.Blocks():
        assert not build_header(gated.studio).loading.active


def generate(client: Client) -> object:
    return client.submit(
        prompt="a cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
        seed=1, batch_size=1, api_name="/txt2img",
    )  # fmt: skip


def test_a_generation_asked_for_during_the_load_waits_with_a_message_then_runs(gated: Gated) -> None:
    client = Client(gated.url, verbose=False)
    job = generate(client)
    assert gated.ui_waiting.wait(timeout=60), "the request waits for the load"
    descriptions: set[str] = set()
    deadline = time.monotonic() + 60
    while LOADING_MESSAGE not in descriptions and time.monotonic() < deadline:  # the gate stays closed meanwhile
        descriptions |= {unit.desc for unit in job.status().progress_data or []}
        time.sleep(0.05)  # polling interval while the message travels to the client, not synchronisation
    assert LOADING_MESSAGE in descriptions, "the client is told what the request waits for"
    assert not job.done()
    gated.gate.set()
    gallery, seeds, *_ = job.result(timeout=120)
    assert len(gallery) == 1 and seeds == "1"


def test_a_rest_request_during_the_load_waits_then_is_answered(gated: Gated) -> None:
    answers: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answers.append(httpx.get(f"{gated.url}sdapi/v1/samplers", timeout=120)))
    asking.start()
    assert gated.rest_waiting.wait(timeout=60), "the REST request waits for the load"
    assert not answers
    gated.gate.set()
    asking.join(timeout=120)
    assert answers[0].status_code == 200 and "Euler a" in answers[0].text


def test_a_rest_request_that_waits_too_long_is_told_to_come_back(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("studio.ui.startup.REST_WAIT_S", 0.2)
    gate = threading.Event()
    studio, _ = gated_studio(lambda: build_studio(make_settings(tiny_model, tmp_path / "outputs")), gate)
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    studio.loader.start()
    try:
        answer = httpx.get(f"http://127.0.0.1:{studio.settings.port}/sdapi/v1/samplers", timeout=60)
        assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit()
        assert LOADING_MESSAGE in answer.json()["detail"]
        page = httpx.get(f"http://127.0.0.1:{studio.settings.port}/", timeout=60)
        assert page.status_code == 200, "the page itself is served all along"
    finally:
        gate.set()
        demo.close()


def test_a_studio_that_cannot_load_says_why_everywhere_without_a_traceback(tmp_path: Path) -> None:
    def broken() -> Studio:
        raise ImportError("No module named 'torch'")

    settings = make_settings(MICRO_MODEL, tmp_path / "outputs")
    waiting = WaitingRoom(settings.max_queue)
    studio = StartingStudio(
        settings, StudioLoader(broken), MICRO_MODEL, None, StyleLibrary(None), waiting, report_loading
    )
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    studio.loader.start()
    try:
        with pytest.raises(AppError) as refused:
            generate(Client(f"http://127.0.0.1:{settings.port}/", verbose=False)).result(timeout=120)
        message = str(refused.value)
        assert "could not start" in message and "pip install -r requirements.txt" in message
        assert "Traceback" not in message
        assert "could not start" in model_status(studio)
        answer = httpx.get(f"http://127.0.0.1:{settings.port}/sdapi/v1/samplers", timeout=60)
        assert answer.status_code == 503 and "could not start" in answer.json()["detail"]
    finally:
        demo.close()


def test_prepare_studio_builds_what_build_studio_builds(tmp_path: Path) -> None:
    """The page's facts (size, defaults, examples, model note) are those of the studio that loads behind it."""
    settings = make_settings(MICRO_MODEL, tmp_path / "outputs")
    starting = prepare_studio(settings)
    starting.loader.run()
    loaded = starting.studio()
    assert loaded.manager.source == starting.source == MICRO_MODEL
    assert (starting.native_side, starting.generation_defaults, starting.examples) == (
        loaded.native_side,
        loaded.generation_defaults,
        loaded.examples,
    )
    assert loaded.styles is starting.styles, "the page's style list is the one the studio applies"


def test_the_loader_builds_once_and_tells_every_waiter() -> None:
    gate, builds, told = threading.Event(), [], []
    built = object()

    def build() -> object:
        gate.wait(timeout=60)
        builds.append(built)
        return built

    loader = StudioLoader(build)  # type: ignore[arg-type]
    loader.when_done(lambda: told.append("before"))
    assert not loader.started and loader.wait(timeout=0) is None
    loader.start()
    loader.start()
    assert loader.started and not loader.done and loader.wait(timeout=0) is None
    gate.set()
    loader.run()  # already started: waits for that build instead of building again
    assert loader.wait() is built and builds == [built] and loader.error is None
    loader.when_done(lambda: told.append("after"))
    assert told == ["before", "after"]


def test_asking_a_starting_studio_for_its_parts_before_the_load_starts_is_a_bug_not_a_hang(tmp_path: Path) -> None:
    """The page is built before the load starts; a builder that reached for the service would wait forever."""
    starting = prepare_studio(make_settings(MICRO_MODEL, tmp_path / "outputs"))
    with pytest.raises(RuntimeError, match="before its load started"):
        _ = starting.service
