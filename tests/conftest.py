"""Shared fixtures: a tiny model saved to disk, the studio built over it, and the app launched on loopback.

No test touches the network: the Hub is switched off for the whole session, and the model is built in code.
"""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub or gradio: no Hub, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="studio-tests-hf-home-")  # an empty cache: nothing to find

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import pytest

from studio.composition import Studio, build_studio
from studio.settings import Settings
from studio.ui import create_demo, launch
from tests.tiny_model import save_tiny_controlnet, save_tiny_model

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def _drives_chromium(module: Path) -> bool:
    """Whether every test of ``module`` drives Chromium: the ``*_browser.py`` modules (other browser tests are told
    by their ``browser`` fixture, and import Playwright only inside the test)."""
    return module.name == "test_browser.py" or module.name.endswith("_browser.py")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``pytest -m "not browser"`` runs without Playwright installed: the browser modules, which import it, are
    not even read then. Without that mark expression a missing Playwright is an import error, as it should be."""
    if _drives_chromium(collection_path) and "not browser" in (config.option.markexpr or ""):
        return not _playwright_installed() or None
    return None


def _playwright_installed() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives Chromium is marked ``browser`` (a quick run skips them with ``-m "not browser"``)."""
    for item in items:
        if _drives_chromium(item.path) or "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


SMALL = {"width": 64, "height": 64, "num_inference_steps": 4}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x model saved as a diffusers folder."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other random weights, for switching."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd-other", seed=1)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x inpainting model (UNet with 9 input channels)."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd-inpainting", seed=2, inpainting=True)


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny canny ControlNet for the tiny model."""
    return save_tiny_controlnet(tiny_model, tmp_path_factory.mktemp("models") / "tiny-controlnet")


def make_settings(model: Path | str, outputs: Path | None, **overrides: object) -> Settings:
    return Settings(model=str(model), outputs=outputs, device="cpu", port=free_port(), **overrides)  # type: ignore[arg-type]


@pytest.fixture
def studio(tiny_model: Path, tiny_controlnet: Path, tmp_path: Path) -> Studio:
    """A fresh studio over the tiny model (and its ControlNet), saving into this test's own folder."""
    return build_studio(make_settings(tiny_model, tmp_path / "outputs", controlnet_model=str(tiny_controlnet)))


@pytest.fixture(scope="session")
def served_studio(tiny_model: Path, tiny_controlnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Studio:
    return build_studio(
        make_settings(tiny_model, tmp_path_factory.mktemp("served-outputs"), controlnet_model=str(tiny_controlnet))
    )


@pytest.fixture(scope="session")
def server(served_studio: Studio) -> Iterator[str]:
    """The studio's UI launched on loopback; yields its URL."""
    demo: gr.Blocks = create_demo(served_studio)
    launch(demo, served_studio, prevent_thread_lock=True, quiet=True)
    yield f"http://{served_studio.settings.host}:{served_studio.settings.port}/"
    demo.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
