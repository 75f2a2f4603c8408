"""What a person clicks, in a real browser: Debian's Chromium driven by Playwright."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from studio.composition import Studio

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    expect(page.locator("#txt2img-generate")).to_be_visible(timeout=30_000)
    yield page
    page.close()


def set_number(page: Page, elem_id: str, value: int) -> None:
    """Type into a slider's number box, as a person does to set an exact value."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def test_type_a_prompt_click_generate_and_see_the_image(page: Page) -> None:
    page.locator("#txt2img-prompt textarea").fill("a red house by the sea")
    set_number(page, "txt2img-width", 64)
    set_number(page, "txt2img-height", 64)
    set_number(page, "txt2img-steps", 4)
    page.locator("#txt2img-seed input").fill("314")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#txt2img-seeds textarea, #txt2img-seeds input").first).to_have_value("314")
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(
        "a red house by the sea\nSteps: 4, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 314, Size: 64x64, "
        "Model: tiny-sd, Version: Diffusion Studio 0.1.0"
    )


def test_select_an_image_and_reuse_its_seed(page: Page) -> None:
    page.locator("#txt2img-prompt textarea").fill("a green tree")
    set_number(page, "txt2img-width", 64)
    set_number(page, "txt2img-height", 64)
    set_number(page, "txt2img-steps", 2)
    set_number(page, "txt2img-batch", 2)
    page.locator("#txt2img-seed input").fill("1000")
    page.locator("#txt2img-generate").click()
    thumbnails = page.locator("#txt2img-gallery .thumbnail-item")
    expect(thumbnails).to_have_count(2, timeout=60_000)
    thumbnails.nth(1).click()
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(re.compile("Seed: 1001,"))
    page.locator("#txt2img-random-seed").click()
    expect(page.locator("#txt2img-seed input")).to_have_value("-1")
    page.locator("#txt2img-reuse-seed").click()
    expect(page.locator("#txt2img-seed input")).to_have_value("1001")


def test_stop_interrupts_a_running_generation(page: Page, served_studio: Studio) -> None:
    outputs = served_studio.settings.outputs
    assert outputs is not None
    saved_before = len(list(outputs.rglob("*.png")))
    steps_seen: list[int] = []
    unet = served_studio.manager.current().pipeline.unet
    original_forward = unet.forward

    def counting_forward(*args: object, **kwargs: object) -> object:
        steps_seen.append(1)
        return original_forward(*args, **kwargs)

    unet.forward = counting_forward
    try:
        page.locator("#txt2img-prompt textarea").fill("a long job")
        set_number(page, "txt2img-width", 256)
        set_number(page, "txt2img-height", 256)
        set_number(page, "txt2img-steps", 150)
        page.locator("#txt2img-generate").click()
        # The progress bar shows steps once the job is denoising; then a person presses Stop.
        expect(page.get_by_text("Denoising").first).to_be_visible(timeout=60_000)
        page.locator("#txt2img-stop").click()
        expect(page.locator("#txt2img-notes")).to_contain_text("Stopped")
        # The GPU is free again only once the stopped job has really ended: the next job proves both.
        set_number(page, "txt2img-width", 64)
        set_number(page, "txt2img-height", 64)
        set_number(page, "txt2img-steps", 2)
        page.locator("#txt2img-generate").click()
        expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    finally:
        del unet.forward
    stopped_steps = len(steps_seen) - 2  # the second job ran 2 steps (CFG is one batched UNet call per step)
    assert 0 < stopped_steps < 150, f"denoising stopped early ({stopped_steps} of 150 steps ran)"
    assert len(list(Path(outputs).rglob("*.png"))) == saved_before + 1, "the stopped job saved nothing"
