"""Take the README's screenshots: the studio over its built-in micro model, driven in Chromium.

    python docs/make_screenshots.py

Writes docs/images/*.png. Uses Debian's chromium (/usr/bin/chromium) and the committed micro model
(assets/micro: 64x64 scenes of coloured shapes), so it needs neither a GPU nor the Hub, and the pictures are real
ones, drawn from prompts in the micro model's domain.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image, ImageDraw  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from studio.composition import build_studio  # noqa: E402
from studio.micro.scenes import PALETTE  # noqa: E402
from studio.settings import Settings  # noqa: E402
from studio.ui import create_demo, launch  # noqa: E402
from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS, set_number  # noqa: E402

OUT = ROOT / "docs" / "images"


def finished(page: Page, tab: str) -> None:
    """Wait for the job's end: the seeds box fills only then (previews show in the gallery before it)."""
    expect(page.locator(f"#{tab}-seeds textarea, #{tab}-seeds input").first).not_to_have_value("", timeout=120_000)


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print("wrote", OUT / f"{name}.png")


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="studio-screenshots-"))
    scene = Image.new("RGB", (64, 64), PALETTE["blue"])
    ImageDraw.Draw(scene).ellipse((8, 18, 32, 42), fill=PALETTE["yellow"])
    ImageDraw.Draw(scene).rectangle((38, 22, 56, 40), fill=PALETTE["red"])
    scene.save(scratch / "scene.png")
    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).polygon([(32, 8), (56, 52), (8, 52)], fill="black")
    drawing.save(scratch / "drawing.png")
    studio = build_studio(Settings(model="micro", outputs=None, device="cpu", port=7899))
    studio.manager.current()  # loaded before the page opens, so the token counts show as the prompts are typed
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto("http://127.0.0.1:7899/")
            page.locator("#txt2img-prompt textarea").fill("a yellow star and a green square on a purple background")
            set_number(page, "txt2img-steps", 20)
            set_number(page, "txt2img-batch", 4)
            page.locator("#txt2img-seed input").fill("42")
            page.locator("#txt2img-generate").click()
            finished(page, "txt2img")
            shoot(page, "txt2img")

            page.get_by_role("tab", name="Inpaint").click()
            editor = page.locator("#inpaint-editor")
            expect(editor.locator(".pixi-target canvas").first).to_be_attached(timeout=30_000)
            editor.locator("input[type=file]").set_input_files(str(scratch / "scene.png"))
            canvas = editor.locator(".pixi-target canvas").first
            page.wait_for_function(
                "() => { const c = document.querySelector('#inpaint-editor .pixi-target canvas');"
                " return c && c.width > 0; }"
            )
            box = canvas.bounding_box()
            assert box is not None
            side = min(box["width"], box["height"])  # the square picture, centred in the canvas
            left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
            for y in range(19, 44, 4):  # strokes 4 pixels apart with the 3-pixel brush: over the yellow circle
                page.mouse.move(left + side * 7 / 64, top + side * y / 64)
                page.mouse.down()
                page.mouse.move(left + side * 33 / 64, top + side * y / 64, steps=8)
                page.mouse.up()
            page.locator("#inpaint-prompt textarea").fill("a green square and a red square on a blue background")
            set_number(page, "inpaint-steps", 20)
            page.locator("#inpaint-masked-content").get_by_text("latent noise").click()  # replace, not repaint
            set_number(page, "inpaint-strength", 1)
            page.locator("#inpaint-seed input").fill("3")
            page.locator("#inpaint-generate").click()
            finished(page, "inpaint")
            shoot(page, "inpaint")

            page.get_by_role("tab", name="ControlNet").click()
            page.locator("#controlnet-image input[type=file]").set_input_files(str(scratch / "drawing.png"))
            expect(page.locator("#controlnet-edges img")).to_be_visible(timeout=30_000)
            page.locator("#controlnet-prompt textarea").fill("a orange triangle on a blue background")
            set_number(page, "controlnet-steps", 20)
            page.locator("#controlnet-generate").click()
            finished(page, "controlnet")
            shoot(page, "controlnet")

            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-prompts textarea").fill(
                "a red circle on a blue background\na red square on a blue background\na red star on a blue background"
            )
            page.locator("#compare-axis input").click()
            page.get_by_role("option", name="Steps").click()
            page.locator("#compare-axis-values textarea, #compare-axis-values input").first.fill("5, 20")
            page.locator("#compare-generate").click()
            expect(page.locator("#compare-grid img")).to_be_visible(timeout=60_000)
            shoot(page, "compare")

            page.get_by_role("tab", name="Lab").click()
            expect(page.locator("#lab-forward img").nth(2)).to_be_visible(timeout=30_000)
            set_number(page, "lab-timestep", 400)
            expect(page.locator("#lab-values")).to_contain_text("t = 400", timeout=30_000)
            expect(page.locator("#lab-strip img")).to_be_visible(timeout=30_000)
            # On the first visit with a model loaded, the latent space is shown too: wait for it to be drawn.
            expect(page.locator("#lab-latent-gallery img").first).to_be_visible(timeout=60_000)
            expect(page.locator("#lab-latent-gallery").get_by_text("processing")).to_have_count(0, timeout=60_000)
            shoot(page, "lab")
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
