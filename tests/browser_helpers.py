"""Driving Debian's Chromium with Playwright: the launch flags and the small moves people make."""

from playwright.sync_api import Page, expect

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts from a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def set_number(page: Page, elem_id: str, value: float) -> None:
    """Type into a slider's number box, as a person does to set an exact value."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def ask_for_a_small_picture(page: Page, tab: str, prompt: str, steps: int = 2) -> None:
    """The prompt at 64x64 with few steps: where most browser tests start (the tiny model draws it at once)."""
    page.locator(f"#{tab}-prompt textarea").fill(prompt)
    set_number(page, f"{tab}-width", 64)
    set_number(page, f"{tab}-height", 64)
    set_number(page, f"{tab}-steps", steps)
