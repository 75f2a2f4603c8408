"""What a person clicks, in a real browser: Debian's Chromium driven by Playwright."""

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, expect

from studio.composition import Studio
from tests.browser_helpers import ask_for_a_small_picture, set_number


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    expect(page.locator("#txt2img-generate")).to_be_visible(timeout=30_000)
    yield page
    page.close()


def test_type_a_prompt_click_generate_and_see_the_image(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a red house by the sea", steps=4)
    page.locator("#txt2img-seed input").fill("314")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#txt2img-seeds textarea, #txt2img-seeds input").first).to_have_value("314")
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(
        re.compile(
            r"^a red house by the sea\nSteps: 4, Sampler: DPM\+\+ 2M Karras, CFG scale: 7, Seed: 314, Size: 64x64, "
            r"Model hash: [0-9a-f]{10}, Model: tiny-sd, Version: Diffusion Studio 0\.1\.0$"
        )
    )


def test_turn_on_the_hires_fix_and_get_the_larger_picture(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a red house by the sea")
    page.locator("#txt2img-seed input").fill("7")
    # Turning it on opens its settings (the server answers the tick), at A1111's factor, 2. Gradio mounts a closed
    # panel's widgets when it first opens, and a slider just mounted can take back a value typed within the same
    # instant (a plain click on the panel's header does the same), so the test types into the panel's text box
    # after the answer and leaves the factor as it is.
    with page.expect_response(lambda response: "/run/predict" in response.url):
        page.locator("#txt2img-hires-enable input").check()
    expect(page.locator("#txt2img-hires-size")).to_contain_text("From 64x64 to 128x128")
    page.locator("#txt2img-hires-prompt textarea").fill("a red boat by the sea")
    page.locator("#txt2img-generate").click()
    parameters = page.locator("#txt2img-parameters textarea")
    expect(parameters).to_have_value(
        re.compile("Size: 64x64, .*Hires upscale: 2, Hires upscaler: Latent, Hires prompt: a red boat by the sea"),
        timeout=60_000,
    )
    image = page.locator("#txt2img-gallery img").first
    expect(image).to_be_visible()
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [128, 128]


def test_select_an_image_and_reuse_its_seed(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a green tree")
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


def test_batch_count_makes_batches_one_after_another(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a blue house")
    set_number(page, "txt2img-count", 3)
    page.locator("#txt2img-seed input").fill("500")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery .thumbnail-item")).to_have_count(3, timeout=60_000)
    expect(page.locator("#txt2img-seeds textarea, #txt2img-seeds input").first).to_have_value("500, 501, 502")


def test_pick_a_style_and_it_is_drawn_or_written_into_the_prompt(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a red house")
    page.locator("#txt2img-styles input").click()
    page.get_by_role("option", name="Watercolor").click()
    page.keyboard.press("Escape")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(
        re.compile(r"^watercolor painting of a red house, soft washes, paper texture\nNegative prompt: photograph"),
        timeout=60_000,
    )
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a red house"), "the prompt box is kept"
    page.locator("#txt2img-apply-styles").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(
        "watercolor painting of a red house, soft washes, paper texture"
    )
    expect(page.locator("#txt2img-negative-prompt textarea")).to_have_value("photograph, 3d render, harsh lines")
    expect(page.locator("#txt2img-styles")).not_to_contain_text("Watercolor"), "the choice is cleared"


def test_variations_of_one_seed_behind_extra(page: Page) -> None:
    """A1111's "Extra": the variation seed and strength; a batch keeps the seed and counts up the variation seed;
    ♻️ brings back the selected image's; turning Extra off sets the strength to 0, so nothing applies unseen."""
    ask_for_a_small_picture(page, "txt2img", "a green tree")
    set_number(page, "txt2img-batch", 2)
    page.locator("#txt2img-seed input").fill("1000")
    subseed = page.locator("#txt2img-subseed input")
    expect(subseed).to_be_hidden()
    page.locator("#txt2img-seed-extra input").check()
    subseed.fill("40")
    set_number(page, "txt2img-subseed-strength", 0.3)
    page.locator("#txt2img-generate").click()
    thumbnails = page.locator("#txt2img-gallery .thumbnail-item")
    expect(thumbnails).to_have_count(2, timeout=60_000)
    expect(page.locator("#txt2img-seeds textarea, #txt2img-seeds input").first).to_have_value(
        "1000, 1000; variation seeds 40, 41"
    )
    thumbnails.nth(1).click()
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(
        re.compile("Seed: 1000, .*Variation seed: 41, Variation seed strength: 0.3")
    )
    page.locator("#txt2img-random-subseed").click()
    expect(subseed).to_have_value("-1")
    page.locator("#txt2img-reuse-subseed").click()
    expect(subseed).to_have_value("41")
    page.locator("#txt2img-seed-extra input").uncheck()
    expect(subseed).to_be_hidden()
    page.locator("#txt2img-seed-extra input").check()
    expect(page.locator("#txt2img-subseed-strength input[type=number]")).to_have_value("0")


def test_resize_seed_from_behind_extra(page: Page) -> None:
    """A1111's "Resize seed from", behind Extra with the variation seed: the picture made wider from the size it
    was found at says so; turning Extra off sets the sizes back to 0 (off)."""
    ask_for_a_small_picture(page, "txt2img", "a green tree")
    set_number(page, "txt2img-width", 128)
    page.locator("#txt2img-seed input").fill("1000")
    expect(page.locator("#txt2img-seed-resize-width")).to_be_hidden()
    page.locator("#txt2img-seed-extra input").check()
    set_number(page, "txt2img-seed-resize-width", 64)
    set_number(page, "txt2img-seed-resize-height", 64)
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-parameters textarea")).to_have_value(
        re.compile("Seed: 1000, Size: 128x64, .*Seed resize from: 64x64"), timeout=60_000
    )
    page.locator("#txt2img-seed-extra input").uncheck()
    page.locator("#txt2img-seed-extra input").check()
    expect(page.locator("#txt2img-seed-resize-width input[type=number]")).to_have_value("0")
    expect(page.locator("#txt2img-seed-resize-height input[type=number]")).to_have_value("0")


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


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A picture a person would upload: a blue square on orange, 96x64."""
    image = Image.new("RGB", (96, 64), (230, 140, 40))
    ImageDraw.Draw(image).rectangle((30, 16, 61, 47), fill=(40, 60, 200))
    path = tmp_path / "photo.png"
    image.save(path)
    return path


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_img2img_upload_and_generate(page: Page, photo: Path) -> None:
    open_tab(page, "Image to image")
    page.locator("#img2img-image input[type=file]").set_input_files(str(photo))
    # The size sliders follow the uploaded picture.
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("96")
    expect(page.locator("#img2img-height input[type=number]")).to_have_value("64")
    page.locator("#img2img-prompt textarea").fill("a blue window")
    set_number(page, "img2img-steps", 4)
    page.locator("#img2img-seed input").fill("8")
    page.locator("#img2img-generate").click()
    expect(page.locator("#img2img-gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#img2img-parameters textarea")).to_have_value(re.compile(r"Size: 96x64, .*Denoising strength"))


def test_inpaint_paint_a_stroke_and_generate(page: Page, photo: Path, served_studio: Studio) -> None:
    open_tab(page, "Inpaint")
    editor = page.locator("#inpaint-editor")
    expect(editor.locator(".pixi-target canvas").first).to_be_attached(timeout=30_000)
    editor.locator("input[type=file]").set_input_files(str(photo))
    canvas = editor.locator(".pixi-target canvas").first
    expect(canvas).to_be_visible()
    page.wait_for_function(
        "() => { const c = document.querySelector('#inpaint-editor .pixi-target canvas'); return c && c.width > 0; }"
    )
    box = canvas.bounding_box()
    assert box is not None
    # One brush stroke across the middle of the picture.
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.35, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.65, y, steps=4)
    page.mouse.up()
    page.locator("#inpaint-prompt textarea").fill("a red ball")
    set_number(page, "inpaint-steps", 4)
    page.locator("#inpaint-seed input").fill("11")
    page.locator("#inpaint-generate").click()
    expect(page.locator("#inpaint-gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#inpaint-parameters textarea")).to_have_value(re.compile(r"Size: 96x64, .*Mask blur: 4"))
    outputs = served_studio.settings.outputs
    assert outputs is not None
    newest = max((outputs / "inpaint").rglob("*-11.png"), key=lambda p: p.stat().st_mtime)
    with Image.open(newest) as result, Image.open(photo) as original:
        out, src = result.convert("RGB"), original.convert("RGB")
        assert out.size == src.size
        assert out.getpixel((2, 2)) == src.getpixel((2, 2)), "far from the stroke: unchanged"
        assert out.getpixel((48, 32)) != src.getpixel((48, 32)), "under the stroke: repainted"


def test_send_a_result_to_img2img(page: Page) -> None:
    ask_for_a_small_picture(page, "txt2img", "a yellow sunset")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    page.locator("#txt2img-send-to-img2img").click()
    expect(page.get_by_role("tab", name="Image to image")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#img2img-prompt textarea")).to_have_value("a yellow sunset")
    expect(page.locator("#img2img-image img").first).to_be_visible()
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("64")


def test_controlnet_edge_preview_follows_the_thresholds_then_generate(page: Page, tmp_path: Path) -> None:
    # Soft shading: which of its edges Canny keeps depends on the thresholds.
    shading = np.tile(np.linspace(0, 255, 96), (64, 1)) + np.random.default_rng(0).normal(0, 20, (64, 96))
    photo = tmp_path / "shaded.png"
    Image.fromarray(shading.clip(0, 255).astype(np.uint8)).convert("RGB").save(photo)
    open_tab(page, "ControlNet")
    page.locator("#controlnet-image input[type=file]").set_input_files(str(photo))
    preview = page.locator("#controlnet-edges img")
    expect(preview).to_be_visible(timeout=30_000)
    first = preview.get_attribute("src")
    set_number(page, "controlnet-low", 5)
    set_number(page, "controlnet-high", 10)
    expect(preview).not_to_have_attribute("src", first or "", timeout=30_000)
    page.locator("#controlnet-prompt textarea").fill("a blue box")
    set_number(page, "controlnet-steps", 3)
    page.locator("#controlnet-generate").click()
    captions = page.locator("#controlnet-gallery .thumbnail-item, #controlnet-gallery .caption-label")
    expect(page.locator("#controlnet-gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#controlnet-parameters textarea")).to_have_value(
        re.compile(r"Threshold A: 5, Threshold B: 10")
    )
    assert captions.count() >= 1


def test_compare_three_prompts_side_by_side(page: Page) -> None:
    open_tab(page, "Compare")
    page.locator("#compare-prompts textarea").fill("a red fox in snow\na red fox in rain\na red fox in fog")
    set_number(page, "compare-width", 64)
    set_number(page, "compare-height", 64)
    set_number(page, "compare-steps", 2)
    page.locator("#compare-generate").click()
    thumbnails = page.locator("#compare-gallery .thumbnail-item")
    expect(thumbnails).to_have_count(3, timeout=60_000)
    for caption in ("a red fox in snow", "a red fox in rain", "a red fox in fog"):
        expect(page.locator("#compare-gallery").get_by_text(caption, exact=True)).to_have_count(1)
    expect(page.locator("#compare-grid img")).to_be_visible()
    expect(page.locator("#compare-diff mark")).to_have_text(["snow", "rain", "fog"])
    # The second cell, sent to image to image: its picture and its own prompt, not the three.
    thumbnails.nth(1).click()
    page.locator("#compare-send-to-img2img").click()
    expect(page.get_by_role("tab", name="Image to image")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#img2img-prompt textarea")).to_have_value("a red fox in rain")
    expect(page.locator("#img2img-image img").first).to_be_visible()
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("64")


def test_the_token_count_follows_the_prompt(page: Page, served_studio: Studio) -> None:
    """A1111's counter under the prompt boxes: the chunks of 75 tokens a prompt takes, as it is typed."""
    served_studio.manager.current()
    page.locator("#txt2img-prompt textarea").fill("a (red:1.3) house")
    expect(page.locator("#txt2img-prompt-tokens")).to_contain_text("Prompt: 3/75 tokens")
    page.locator("#txt2img-prompt textarea").fill("a red house on the sea " * 14)
    expect(page.locator("#txt2img-prompt-tokens")).to_contain_text("Prompt: 84/150 tokens")
    page.locator("#txt2img-negative-prompt textarea").fill("sea")
    expect(page.locator("#txt2img-negative-prompt-tokens")).to_contain_text("Negative prompt: 1/75 tokens")
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompts textarea").fill("a red house\n" + "a red house on the sea " * 14)
    expect(page.locator("#compare-prompts-tokens")).to_contain_text("Longest prompt: 84/150 tokens")
