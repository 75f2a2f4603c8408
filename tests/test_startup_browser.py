"""The header in a real browser while the studio's libraries load: it says so, then shows the model by itself once
they have (its timer), with no reload. The load waits behind a gate the test opens."""

import threading
from pathlib import Path

from playwright.sync_api import Browser, expect

from studio.composition import build_studio
from studio.startup import LOADING_MESSAGE
from studio.ui import create_demo, launch
from tests.conftest import make_settings
from tests.test_startup import gated_studio

LONG = 60_000


def test_the_header_turns_from_loading_to_the_model_line(browser: Browser, tiny_model: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    studio, _ = gated_studio(lambda: build_studio(make_settings(tiny_model, tmp_path / "outputs")), gate)
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    studio.loader.start()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"http://127.0.0.1:{studio.settings.port}/")
        status = page.locator("#model-status")
        expect(status).to_contain_text(LOADING_MESSAGE, timeout=LONG)
        expect(page.locator("#txt2img-generate")).to_be_visible(timeout=LONG)
        gate.set()
        expect(status).to_contain_text("not loaded: loads on the next generation", timeout=LONG)
        expect(status).not_to_contain_text(LOADING_MESSAGE)
    finally:
        gate.set()
        page.close()
        demo.close()
