"""``--share`` when the share link cannot be made: the studio says so and keeps serving locally."""

import logging
from pathlib import Path

import gradio.networking
import httpx
import pytest

from studio.composition import build_studio
from studio.ui import create_demo, launch
from tests.conftest import make_settings


def test_a_share_link_that_cannot_be_made_is_reported_and_the_studio_serves_locally(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    def blocked_tunnel(*args: object, local_port: int, **kwargs: object) -> str:
        attempts.append(local_port)  # where Gradio opens its tunnel: as an offline machine, it fails here
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", blocked_tunnel)
    studio = build_studio(make_settings(tiny_model, None, share=True, allow_public=True))
    demo = create_demo(studio)
    with caplog.at_level(logging.WARNING, logger="studio.ui.server"):
        launch(demo, studio, prevent_thread_lock=True, quiet=True)
    try:
        assert attempts == [studio.settings.port], "the studio asked Gradio for a share link"
        assert demo.share_url is None
        local = f"http://127.0.0.1:{studio.settings.port}/"
        warnings = [r.getMessage() for r in caplog.records if r.name == "studio.ui.server"]
        assert any("share link could not be created" in w and local in w for w in warnings), warnings
        assert httpx.get(local, timeout=30).status_code == 200, "the studio still serves on this machine"
    finally:
        demo.close()
