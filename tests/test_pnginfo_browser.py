"""PNG Info and the examples, in a real browser: drop a picture, send its settings; click an example."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from studio.metadata import write_image

A1111_TEXT = (
    "a watercolor fox in a misty forest\n"
    "Negative prompt: blurry, text\n"
    "Steps: 33, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 987654, Size: 72x96, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.42, Version: v1.10.1"
)


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    expect(page.locator("#txt2img-generate")).to_be_visible(timeout=30_000)
    yield page
    page.close()


@pytest.fixture
def a1111_png(tmp_path: Path) -> Path:
    """A picture as A1111 saves it: a PNG with its parameters text (A1111 1.8+: sampler and schedule apart)."""
    path = tmp_path / "00042-987654.png"
    write_image(Image.new("RGB", (72, 96), (90, 140, 80)), str(path), "png", A1111_TEXT, {})
    return path


def drop_into_pnginfo(page: Page, picture: Path, text: str = A1111_TEXT) -> None:
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(picture))
    expect(page.locator("#pnginfo-parameters textarea")).to_have_value(text, timeout=30_000)


def number(page: Page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def test_drop_an_a1111_png_and_send_it_to_txt2img(page: Page, a1111_png: Path) -> None:
    drop_into_pnginfo(page, a1111_png)
    expect(page.locator("#pnginfo-fields")).to_contain_text("6ce0161689")
    page.locator("#pnginfo-send-to-txt2img").click()
    expect(page.get_by_role("tab", name="Text to image")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a watercolor fox in a misty forest")
    expect(page.locator("#txt2img-negative-prompt textarea")).to_have_value("blurry, text")
    expect(page.locator("#txt2img-sampler input")).to_have_value("DPM++ 2M Karras")
    expect(page.locator("#txt2img-scheduler input")).to_have_value("Automatic")
    expect(page.locator("#txt2img-steps input[type=number]")).to_have_value("33")
    expect(page.locator("#txt2img-cfg input[type=number]")).to_have_value("5.5")
    expect(page.locator("#txt2img-seed input")).to_have_value("987654")
    expect(page.locator("#txt2img-width input[type=number]")).to_have_value("72")
    expect(page.locator("#txt2img-height input[type=number]")).to_have_value("96")
    expect(page.locator("#txt2img-hires-enable input")).not_to_be_checked()
    expect(page.locator("#txt2img-clip-skip input[type=number]")).to_have_value("1")
    expect(page.locator("#txt2img-seed-extra input")).not_to_be_checked()
    expect(page.locator("#txt2img-tiling input")).not_to_be_checked()


def test_a_schedule_type_and_soft_inpainting_are_sent_to_inpaint(page: Page, tmp_path: Path) -> None:
    soft = (
        "Mask blur: 8, Soft inpainting enabled: True, Soft inpainting schedule bias: 1.5, "
        "Soft inpainting preservation strength: 0.7, Soft inpainting transition contrast boost: 6"
    )
    text = A1111_TEXT.replace("Sampler: DPM++ 2M, Schedule type: Karras", "Sampler: Euler, Schedule type: Exponential")
    text = text.replace(", Version:", f", {soft}, Version:")
    path = tmp_path / "00044-987654.png"
    write_image(Image.new("RGB", (72, 96), (90, 140, 80)), str(path), "png", text, {})
    drop_into_pnginfo(page, path, text)
    page.locator("#pnginfo-send-to-inpaint").click()
    expect(page.get_by_role("tab", name="Inpaint")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#inpaint-sampler input")).to_have_value("Euler")
    expect(page.locator("#inpaint-scheduler input")).to_have_value("Exponential")
    page.locator("#inpaint-soft-inpainting").get_by_text("Soft inpainting").first.click()  # open the accordion
    expect(page.locator("#inpaint-soft-inpainting-enabled input")).to_be_checked()
    expect(page.locator("#inpaint-soft-schedule-bias input[type=number]")).to_have_value("1.5")
    expect(page.locator("#inpaint-soft-preservation-strength input[type=number]")).to_have_value("0.7")
    expect(page.locator("#inpaint-soft-transition-contrast input[type=number]")).to_have_value("6")
    page.get_by_role("tab", name="Text to image").click()
    expect(page.locator("#txt2img-scheduler input")).to_have_value("Automatic")  # the other tabs keep their own


def test_a_hires_fixed_tiled_variation_turns_them_all_on(page: Page, tmp_path: Path) -> None:
    hires = (
        "Variation seed: 31, Variation seed strength: 0.3, Seed resize from: 256x320, Clip skip: 2, Tiling: True, "
        "Hires upscale: 1.5, "
        'Hires steps: 10, Hires upscaler: Latent, Hires sampler: DDIM, Hires prompt: "a fox, in snow"'
    )
    text = A1111_TEXT.replace(", Version:", f", {hires}, Version:")
    path = tmp_path / "00043-987654.png"
    write_image(Image.new("RGB", (108, 144), (90, 140, 80)), str(path), "png", text, {})
    drop_into_pnginfo(page, path, text)
    page.locator("#pnginfo-send-to-txt2img").click()
    expect(page.locator("#txt2img-hires-enable input")).to_be_checked()
    expect(page.locator("#txt2img-hires-scale input[type=number]")).to_be_visible()  # its settings opened
    expect(page.locator("#txt2img-hires-scale input[type=number]")).to_have_value("1.5")
    expect(page.locator("#txt2img-hires-steps input[type=number]")).to_have_value("10")
    expect(page.locator("#txt2img-hires-strength input[type=number]")).to_have_value("0.42")
    expect(page.locator("#txt2img-hires-upscaler input")).to_have_value("Latent")
    expect(page.locator("#txt2img-hires-sampler input")).to_have_value("DDIM")
    expect(page.locator("#txt2img-hires-prompt textarea")).to_have_value("a fox, in snow")
    expect(page.locator("#txt2img-hires-negative-prompt textarea")).to_have_value("")
    expect(page.locator("#txt2img-width input[type=number]")).to_have_value("72")  # the first pass's size
    expect(page.locator("#txt2img-clip-skip input[type=number]")).to_have_value("2")
    expect(page.locator("#txt2img-seed-extra input")).to_be_checked()
    expect(page.locator("#txt2img-subseed input")).to_have_value("31")
    expect(page.locator("#txt2img-subseed-strength input[type=number]")).to_have_value("0.3")
    expect(page.locator("#txt2img-seed-resize-width input[type=number]")).to_have_value("256")
    expect(page.locator("#txt2img-seed-resize-height input[type=number]")).to_have_value("320")
    expect(page.locator("#txt2img-tiling input")).to_be_checked()


def test_send_to_img2img_brings_the_picture_and_the_strength(page: Page, a1111_png: Path) -> None:
    drop_into_pnginfo(page, a1111_png)
    page.locator("#pnginfo-send-to-img2img").click()
    expect(page.get_by_role("tab", name="Image to image")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#img2img-image img").first).to_be_visible()
    expect(page.locator("#img2img-prompt textarea")).to_have_value("a watercolor fox in a misty forest")
    expect(page.locator("#img2img-strength input[type=number]")).to_have_value("0.42")
    expect(page.locator("#img2img-seed input")).to_have_value("987654")
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("72")
    expect(page.locator("#img2img-height input[type=number]")).to_have_value("96")


def test_a_picture_without_parameters_says_so(page: Page, tmp_path: Path) -> None:
    plain = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(plain)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(plain))
    expect(page.locator("#pnginfo-notes")).to_contain_text("no generation parameters", timeout=30_000)


def test_clicking_an_example_fills_the_fields(page: Page) -> None:
    page.locator("#txt2img-examples").get_by_text("An astronaut cat, studio portrait").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(
        "portrait of a cat in an astronaut suit, studio lighting, highly detailed, 85mm photo"
    )
    expect(page.locator("#txt2img-sampler input")).to_have_value("DPM++ SDE Karras")
    expect(page.locator("#txt2img-steps input[type=number]")).to_have_value("20")
    expect(page.locator("#txt2img-seed input")).to_have_value("7")

    page.get_by_role("tab", name="Image to image").click()
    page.locator("#img2img-examples").get_by_text("The drawn lighthouse as an impressionist painting").click()
    expect(page.locator("#img2img-image img").first).to_be_visible()
    expect(page.locator("#img2img-prompt textarea")).to_have_value(
        "a lighthouse on rocks at dusk, impressionist oil painting, thick brush strokes"
    )
    expect(page.locator("#img2img-strength input[type=number]")).to_have_value("0.65")
    assert number(page, "img2img-width") == "512"

    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-examples").get_by_text("A fox in three weathers, two samplers").click()
    expect(page.locator("#compare-prompts textarea")).to_have_value(
        "a red fox in the snow, photo\na red fox in the rain, photo\na red fox in the desert, photo"
    )
    expect(page.locator("#compare-axis input")).to_have_value("Sampler")
    expect(page.locator("#compare-axis-values textarea")).to_have_value("Euler a, DPM++ 2M Karras")


def test_choose_jpeg_and_the_gallery_offers_a_jpeg_with_the_parameters(page: Page) -> None:
    page.locator("#txt2img-prompt textarea").fill("a jpeg of a pear")
    for elem_id, value in (("txt2img-width", 64), ("txt2img-height", 64), ("txt2img-steps", 2)):
        box = page.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")
    page.locator("#txt2img-format").get_by_text("JPEG", exact=True).click()
    page.locator("#txt2img-seed input").fill("2718")
    page.locator("#txt2img-generate").click()
    image = page.locator("#txt2img-gallery img").first
    expect(image).to_have_attribute("src", re.compile(r"-2718\.jpg$"), timeout=60_000)
