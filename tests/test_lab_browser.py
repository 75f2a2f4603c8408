"""The Lab tab in a real browser: move t and see x_t change, then film a generation."""

import re
import threading
from collections.abc import Callable

from playwright.sync_api import Page, expect, sync_playwright

from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS, ask_for_a_small_picture, set_number


def in_the_lab(server: str, scenario: Callable[[Page], None]) -> None:
    """Open the Lab tab in a fresh Chromium and play ``scenario`` there, in a thread of its own.

    tests/test_browser.py keeps its sync Playwright running for the whole session, and a second one cannot start
    in the same thread (Playwright finds its event loop running); in another thread it can. Whatever the scenario
    raises is raised here, so a failed ``expect`` fails the test as usual.
    """
    failures: list[BaseException] = []

    def play() -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(server)
                    page.get_by_role("tab", name="Lab").click()
                    expect(page.locator("#lab-timestep")).to_be_visible(timeout=30_000)
                    scenario(page)
                finally:
                    browser.close()
        except BaseException as failure:  # handed to the test's thread
            failures.append(failure)

    player = threading.Thread(target=play, name="lab-browser")
    player.start()
    player.join()
    if failures:
        raise failures[0]


def noisy_picture(page: Page) -> str:
    """The address of x_t, the third picture of the x0, eps, x_t gallery, once it is shown."""
    picture = page.locator("#lab-forward img").nth(2)
    expect(picture).to_be_visible(timeout=30_000)
    return picture.get_attribute("src") or ""


def test_move_t_and_see_the_picture_drown(server: str) -> None:
    in_the_lab(server, move_t_and_see_the_picture_drown)


def move_t_and_see_the_picture_drown(page: Page) -> None:
    expect(page.locator("#lab-values")).to_contain_text("t = 250", timeout=30_000)
    before = noisy_picture(page)
    plots = page.locator("#lab-plots img")
    plots_before = plots.get_attribute("src")
    set_number(page, "lab-timestep", 900)
    expect(page.locator("#lab-values")).to_contain_text("t = 900")
    expect(page.locator("#lab-forward img").nth(2)).not_to_have_attribute("src", before)
    expect(plots).not_to_have_attribute("src", plots_before or "")
    expect(page.locator("#lab-strip img")).to_be_visible()
    # Another schedule, same t: other numbers.
    page.locator("#lab-schedule").get_by_text("cosine (improved DDPM)").click()
    expect(page.locator("#lab-values")).to_contain_text("cosine (improved DDPM) schedule")
    # The latent space: ticking the box loads the model and shows the VAE's view.
    page.locator("#lab-latent input[type=checkbox]").check()
    expect(page.locator("#lab-latent-gallery img")).to_have_count(3, timeout=60_000)
    expect(page.locator("#lab-latent-notes")).to_contain_text("latents")


def test_run_the_reverse_process_and_see_the_filmstrip(server: str) -> None:
    in_the_lab(server, run_the_reverse_process_and_see_the_filmstrip)


def run_the_reverse_process_and_see_the_filmstrip(page: Page) -> None:
    ask_for_a_small_picture(page, "lab", "a red house by the sea", steps=4)
    set_number(page, "lab-every", 2)
    page.locator("#lab-seed input").fill("-1")
    page.locator("#lab-trajectory-run").click()
    expect(page.locator("#lab-filmstrip img")).to_be_visible(timeout=60_000)
    expect(page.locator("#lab-final img")).to_be_visible()
    notes = page.locator("#lab-trajectory-notes")
    expect(notes).to_contain_text(re.compile(r"2 frames of .*, 4 steps, seed \d+"))
    used = re.search(r"seed (\d+)", notes.inner_text())
    assert used is not None
    page.locator("#lab-reuse-seed").click()  # the random seed the run drew, to make it again
    expect(page.locator("#lab-seed input")).to_have_value(used.group(1))
    page.get_by_text("Every frame at full size").click()
    expect(page.locator("#lab-frames .thumbnail-item")).to_have_count(4)
    # The final image, sent on to ControlNet with the Lab's prompt.
    page.locator("#lab-final-send-to-controlnet").click()
    expect(page.get_by_role("tab", name="ControlNet")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#controlnet-prompt textarea")).to_have_value("a red house by the sea")
    expect(page.locator("#controlnet-image img").first).to_be_visible()
