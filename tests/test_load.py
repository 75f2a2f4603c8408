"""Correct under load: fixed seeds under concurrency, a full queue, one user's Stop, memory over many runs."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image

from studio.composition import Studio, build_studio
from studio.model_manager import Task
from studio.requests import Txt2ImgRequest
from studio.ui import create_demo, launch
from tests.conftest import make_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def txt2img_arguments(prompt: str, seed: int) -> dict[str, object]:
    return dict(
        prompt=prompt, negative_prompt="", sampler="Euler a", steps=3, guidance_scale=7, width=64, height=64,
        seed=seed, batch_size=1, api_name="/txt2img",
    )  # fmt: skip


def pixels_of(gallery: list[dict[str, str]]) -> bytes:
    with Image.open(gallery[0]["image"]) as image:
        return image.convert("RGB").tobytes()


def test_same_seed_same_image_whether_idle_or_busy(server: str) -> None:
    jobs = [(f"a {colour} house", seed) for colour in ("red", "blue", "green") for seed in (1, 2)]
    solo = {job: pixels_of(Client(server, verbose=False).predict(**txt2img_arguments(*job))[0]) for job in jobs}

    def busy(job: tuple[str, int]) -> bytes:
        return pixels_of(Client(server, verbose=False).predict(**txt2img_arguments(*job))[0])

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        together = dict(zip(jobs, pool.map(busy, jobs), strict=True))
    assert together == solo


@pytest.fixture
def small_queue_server(tiny_model: Path) -> Iterator[tuple[str, Studio]]:
    studio = build_studio(make_settings(tiny_model, None, max_queue=1))
    demo: gr.Blocks = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{studio.settings.port}/", studio
    demo.close()


def wait_for(condition, limit_s: float = 60) -> None:
    """Poll ``condition`` until it holds (a bounded wait for another thread's progress, not a fixed sleep)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_full_queue_says_so_and_the_server_stays_responsive(small_queue_server: tuple[str, Studio]) -> None:
    url, studio = small_queue_server
    clients = [Client(url, verbose=False) for _ in range(3)]
    with studio.manager.job(Task.TXT2IMG, "Euler", [1]):  # the GPU is busy: the first job waits on it
        running = clients[0].submit(**txt2img_arguments("a cat", 1))
        wait_for(lambda: running.status().code.name == "PROCESSING")
        waiting = clients[1].submit(**txt2img_arguments("a dog", 2))
        wait_for(lambda: waiting.status().code.name == "IN_QUEUE")
        with pytest.raises((AppError, QueueError), match="(?i)queue is full"):
            clients[2].predict(**txt2img_arguments("a bird", 3))
        assert Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert len(running.result(timeout=60)[0]) == 1
    assert len(waiting.result(timeout=60)[0]) == 1


def test_stop_interrupts_only_the_job_of_the_user_who_pressed_it(browser: Browser, server: str) -> None:
    from playwright.sync_api import expect

    from tests.browser_helpers import set_number

    first, second = browser.new_page(), browser.new_page()
    for page in (first, second):
        page.goto(server)
        expect(page.locator("#txt2img-generate")).to_be_visible(timeout=30_000)
    first.locator("#txt2img-prompt textarea").fill("a long job")
    for elem_id, value in (("txt2img-width", 256), ("txt2img-height", 256), ("txt2img-steps", 150)):
        set_number(first, elem_id, value)
    second.locator("#txt2img-prompt textarea").fill("a short job")
    for elem_id, value in (("txt2img-width", 64), ("txt2img-height", 64), ("txt2img-steps", 3)):
        set_number(second, elem_id, value)
    first.locator("#txt2img-generate").click()
    expect(first.get_by_text("Denoising").first).to_be_visible(timeout=60_000)
    second.locator("#txt2img-generate").click()  # queued behind the long job
    first.locator("#txt2img-stop").click()
    expect(first.locator("#txt2img-notes")).to_contain_text("Stopped")
    expect(second.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    expect(second.locator("#txt2img-parameters textarea")).to_have_value(
        __import__("re").compile("^a short job\nSteps: 3,")
    )
    expect(first.locator("#txt2img-gallery img")).to_have_count(0)
    first.close()
    second.close()


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_two_hundred_generations_leave_memory_where_it_started(tiny_model: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None))
    request = Txt2ImgRequest("a cat", width=64, height=64, num_inference_steps=1, seed=1)
    for _ in range(20):  # warm up allocator pools and caches
        studio.service.txt2img(request)
    gc.collect()
    before = resident_bytes()
    for _ in range(200):
        studio.service.txt2img(request)
    gc.collect()
    after = resident_bytes()
    assert after <= before * 1.05, f"resident memory grew from {before / 2**20:.0f} MB to {after / 2**20:.0f} MB"


def test_switching_models_during_a_run_never_unloads_weights_in_use(studio: Studio, other_tiny_model: Path) -> None:
    started, release = threading.Event(), threading.Event()
    results: list[object] = []

    def on_step(done: int, total: int) -> None:
        started.set()
        release.wait(timeout=60)

    worker = threading.Thread(
        target=lambda: results.append(
            studio.service.txt2img(
                Txt2ImgRequest("a cat", width=64, height=64, num_inference_steps=3, seed=4), progress=on_step
            )
        )
    )
    worker.start()
    assert started.wait(timeout=60)
    studio.manager.switch(str(other_tiny_model))  # while the first job is mid-run
    release.set()
    worker.join(timeout=60)
    assert results, "the running job finished on the weights it started with"
    alone = build_studio(make_settings(studio.settings.model, None)).service.txt2img(
        Txt2ImgRequest("a cat", width=64, height=64, num_inference_steps=3, seed=4)
    )
    finished = results[0].images[0].image  # type: ignore[attr-defined]
    assert np.array_equal(np.asarray(finished), np.asarray(alone.images[0].image))
