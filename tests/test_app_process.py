"""``python app.py`` as a newcomer runs it: a real process, real flags, no network."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from studio.settings import DEFAULT_MODEL
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def app_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"), GRADIO_ANALYTICS_ENABLED="False")
    return env


def wait_until_serving(url: str, process: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    """Poll until the server answers 200 (or the process dies): start-up takes seconds of imports."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"app.py exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)  # polling interval, not synchronisation: the loop waits for the 200
    raise AssertionError("app.py did not answer within the limit")


@pytest.fixture
def offline_app(tmp_path: Path) -> Iterator[str]:
    """The studio started on a named Hub model on a machine with no network and an empty model cache (a model the
    user names is never replaced by the micro fallback, so its absence must be explained)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--model", DEFAULT_MODEL, "--port", str(port), "--no-save"],
        cwd=tmp_path,
        env=app_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_help_lists_the_flags(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--help"], env=app_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    for flag in ("--model", "--device", "--dtype", "--outputs", "--no-save", "--max-pixels", "--offline"):
        assert flag in result.stdout


def test_starts_offline_without_its_named_model_and_says_which_is_missing(offline_app: str) -> None:
    client = Client(offline_app, verbose=False)
    with pytest.raises(AppError) as caught:
        client.predict(
            prompt="a cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64,
            seed=1, batch_size=1, api_name="/txt2img",
        )  # fmt: skip
    message = str(caught.value)
    assert DEFAULT_MODEL in message
    assert "--model" in message and "local diffusers folder" in message
    assert "Traceback" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_impossible_device_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--device", "cuda"], env=app_env(tmp_path), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PyTorch sees no CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_no_network_and_no_offline_flag_the_first_run_serves_the_micro_model(tmp_path: Path) -> None:
    """The README's first run on a machine with no network: HF_HUB_OFFLINE unset, the Hub unreachable (its address a
    closed loopback port, so the client of the day raises its own connection error), an empty cache."""
    env = app_env(tmp_path)
    del env["HF_HUB_OFFLINE"]
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--no-save"],
            cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_serving(url, process)
            _gallery, _seeds, parameters, *_ = Client(url, verbose=False).predict(
                prompt="a red circle on a white background", negative_prompt="", sampler="Euler", steps=2,
                guidance_scale=7, width=64, height=64, seed=1, batch_size=1, api_name="/txt2img",
            )  # fmt: skip
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "Model: micro" in parameters
    assert "Traceback" not in log.read_text(errors="replace")
