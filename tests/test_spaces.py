"""Hugging Face Spaces: the Space card in README.md, the ZeroGPU path through the real ``spaces`` package, and
nothing of it off Spaces."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import gradio
import httpx
import pytest
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from PIL import Image

from studio.model_manager import DEFAULT_CONTROLNETS
from studio.settings import DEFAULT_MODEL, Settings
from studio.ui import zerogpu
from tests.conftest import free_port
from tests.test_app_process import app_env, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
# Hardware a Space card may suggest (https://huggingface.co/docs/hub/spaces-config-reference).
HARDWARE = {
    "cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
    "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8",
}  # fmt: skip


def space_card() -> dict[str, object]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md starts with the Space card"
    card = yaml.safe_load(text.split("---\n", 2)[1])
    assert isinstance(card, dict)
    return card


def requirement(name: str) -> Requirement:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and Requirement(line).name == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def test_the_space_card_matches_the_requirements_and_the_defaults() -> None:
    card = space_card()
    assert card["sdk"] == "gradio"
    assert card["app_file"] == "app.py" and (ROOT / "app.py").is_file()
    sdk_version = Version(str(card["sdk_version"]))
    assert str(sdk_version) == gradio.__version__, "the Space runs the Gradio the tests run"
    assert sdk_version in requirement("gradio").specifier, "requirements.txt must not reinstall another Gradio"
    python = Version(str(card["python_version"]))
    requires_python = SpecifierSet(
        next(line.split("=", 1)[1].strip().strip('"') for line in (ROOT / "pyproject.toml").read_text().splitlines()
             if line.startswith("requires-python"))
    )  # fmt: skip
    assert python in requires_python
    assert card["suggested_hardware"] in HARDWARE
    assert len(str(card.get("short_description", ""))) <= 60
    default_controlnet = DEFAULT_CONTROLNETS["SD 1.x"]
    assert Settings.from_cli([], environ={}).model == DEFAULT_MODEL
    assert {DEFAULT_MODEL, default_controlnet} <= set(card["models"])  # type: ignore[arg-type]


def test_the_default_models_are_preloaded_with_every_file_they_load() -> None:
    entries = {}
    for entry in space_card()["preload_from_hub"]:  # type: ignore[union-attr]
        repo, _, files = str(entry).partition(" ")
        entries[repo] = set(files.split(",")) if files else set()
    model_files = entries[DEFAULT_MODEL]
    assert "model_index.json" in model_files
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "feature_extractor"):
        assert any(name.startswith(f"{component}/") for name in model_files), component
    for component, weights in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")):
        assert f"{component}/config.json" in model_files
        assert f"{component}/{weights}.fp16.safetensors" in model_files, "the float16 files a GPU Space loads"
    assert {"config.json", "diffusion_pytorch_model.fp16.safetensors"} <= entries[DEFAULT_CONTROLNETS["SD 1.x"]]


def test_app_imports_spaces_before_torch_and_after_reading_the_settings() -> None:
    body = ast.parse((ROOT / "app.py").read_text()).body
    studio_imports = [node.module for node in body if isinstance(node, ast.ImportFrom) and node.level == 0]
    settings_read = next(i for i, node in enumerate(body) if isinstance(node, ast.Try))
    zerogpu_import = next(
        i for i, node in enumerate(body) if isinstance(node, ast.ImportFrom) and "zerogpu" in ast.unparse(node)
    )
    # The studio's own modules after the settings come in after spaces: studio.startup's load brings torch in.
    studio_import = next(
        i
        for i, node in enumerate(body)
        if isinstance(node, ast.ImportFrom) and node.module in ("studio.startup", "studio.composition")
    )
    assert next(m for m in studio_imports if m and m.startswith("studio")) == "studio.settings"
    assert settings_read < zerogpu_import < studio_import
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, studio.ui.zerogpu; print('spaces' in sys.modules, 'torch' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert imported.stdout.split() == ["True", "False"], "spaces comes in, torch not yet"


def test_off_zerogpu_the_decorator_changes_nothing() -> None:
    assert not zerogpu.ZERO_GPU, "SPACES_ZERO_GPU is not set in the tests"

    def handler(prompt: str) -> str:
        return prompt

    assert zerogpu.gpu()(handler) is handler


def test_durations_follow_steps_size_and_batch() -> None:
    small = zerogpu.estimate_seconds(steps=25, width=512, height=512)
    assert zerogpu.MIN_SECONDS <= small <= 30
    assert zerogpu.estimate_seconds(steps=50, width=512, height=512) > small
    assert zerogpu.estimate_seconds(steps=25, width=1024, height=1024) > small
    assert zerogpu.estimate_seconds(steps=25, width=512, height=512, images=4) > small
    assert zerogpu.estimate_seconds(steps=25, width=512, height=512, strength=0.2) == zerogpu.MIN_SECONDS
    assert zerogpu.estimate_seconds(steps=150, width=2048, height=2048, images=8) == zerogpu.MAX_SECONDS

    def txt2img(prompt: str, steps: float, width: float, height: float, batch_size: float) -> None: ...

    duration = zerogpu.duration_of(txt2img, zerogpu.generation_seconds)
    assert duration("a cat", 150, 512, 512, 2) == zerogpu.estimate_seconds(150, 512, 512, images=2) == 55

    def inpaint(image: object, steps: float = 25, strength: float = 0.75) -> None: ...

    editor_value = {"background": Image.new("RGB", (1024, 768)), "layers": []}
    assert zerogpu.duration_of(inpaint, zerogpu.generation_seconds)(editor_value, 40) == zerogpu.estimate_seconds(
        40, 1024, 768, strength=0.75
    )
    cells = {"prompts": "a\nb\nc", "axis": "Steps", "axis_values": "10, 40", "steps": 20, "width": 512, "height": 512}
    assert zerogpu.compare_seconds(cells) == zerogpu.estimate_seconds(40, 512, 512, images=6)
    race = {"samplers": ["DDPM", "DDIM"], "steps": 20, "ddpm_steps": 100, "rerun": True, "width": 512, "height": 512}
    assert zerogpu.race_seconds(race) == zerogpu.estimate_seconds(240, 512, 512)


# --- The real spaces.GPU path: app.py as a ZeroGPU Space runs it, with a stand-in for ZeroGPU's device API ---------


@dataclass
class DeviceApi:
    """ZeroGPU's device API as ``spaces`` calls it: /startup-report, /schedule (a GPU for N seconds), /allow (this
    worker process may use it), /release. Requests longer than ``busy_above_s`` are answered "no GPU available"."""

    busy_above_s: int = 40
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    released: threading.Condition = field(default_factory=threading.Condition)

    def tokens_released(self) -> list[str]:
        return [query["allowToken"] for path, query in self.calls if path == "/release"]


def serve_device_api(api: DeviceApi) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            with api.released:
                api.calls.append((url.path, query))
                api.released.notify_all()
            if url.path == "/schedule" and int(query.get("durationSeconds", 0)) > api.busy_above_s:
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            body = b""
            if url.path == "/schedule":
                token = f"token-{sum(path == '/schedule' for path, _ in api.calls)}"
                body = json.dumps({"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-0", "allowToken": token}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class ZeroGpuSpace:
    url: str
    api: DeviceApi
    outputs: Path
    pid: int
    startup_log: str
    """What the app logged until it served, before any request."""


@pytest.fixture(scope="module")
def zero_gpu_space(
    tiny_model: Path, tiny_controlnet: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ZeroGpuSpace]:
    api = DeviceApi()
    device_api = serve_device_api(api)
    folder = tmp_path_factory.mktemp("zerogpu-space")
    port = free_port()
    env = app_env(folder)
    env.update(
        SPACES_ZERO_GPU="true",
        SPACES_ZERO_DEVICE_API_URL=f"http://127.0.0.1:{device_api.server_address[1]}",
        SPACE_ID="tests/diffusion-studio",
        GRADIO_SSR_MODE="false",
        # GNU OpenMP's thread pool does not survive fork (the child hangs at its first parallel region), and here the
        # denoising runs on the CPU in the forked worker; on ZeroGPU it runs on the GPU.
        OMP_NUM_THREADS="1",
    )
    log = (folder / "app.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, str(ROOT / "tests" / "zerogpu_harness.py"), "--model", str(tiny_model),
            "--controlnet-model", str(tiny_controlnet), "--device", "cpu", "--host", "127.0.0.1",
            "--port", str(port), "--outputs", str(folder / "outputs"), "--preview-every", "0",
        ],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers spaces forks end with it
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process)
        startup_log = (folder / "app.log").read_text(errors="replace")
        yield ZeroGpuSpace(url, api, folder / "outputs", process.pid, startup_log)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()
        device_api.shutdown()


def generate(client: Client, prompt: str, seed: int, steps: int, size: int = 64, batch_size: int = 1) -> tuple:
    return client.predict(
        prompt=prompt, negative_prompt="", sampler="Euler", steps=steps, guidance_scale=7, width=size,
        height=size, seed=seed, batch_size=batch_size, api_name="/txt2img",
    )  # fmt: skip


def test_a_zerogpu_space_loads_at_start_and_runs_handlers_in_a_gpu_worker(zero_gpu_space: ZeroGpuSpace) -> None:
    api = zero_gpu_space.api
    assert api.calls[0][0] == "/startup-report", "spaces saw decorated handlers when the app launched"
    assert "loading model" in zero_gpu_space.startup_log, "the weights loaded at start-up (ZeroGPU requires it)"
    assert "cached controlnet" in zero_gpu_space.startup_log, "the ControlNet too, before any request"
    # REST jobs would run outside spaces.GPU, in the process without a GPU: the A1111 routes are not served there.
    assert "REST API is off on ZeroGPU" in zero_gpu_space.startup_log
    assert httpx.get(zero_gpu_space.url + "sdapi/v1/samplers", timeout=30).status_code == 404
    client = Client(zero_gpu_space.url, verbose=False)
    gallery, seeds, parameters, _ = generate(client, "a lighthouse", seed=3, steps=3)
    assert seeds == "3" and "Steps: 3, Sampler: Euler" in parameters
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (64, 64)
    schedules = [query for path, query in api.calls if path == "/schedule"]
    allows = [query for path, query in api.calls if path == "/allow"]
    assert schedules[-1]["durationSeconds"] == str(zerogpu.estimate_seconds(3, 64, 64))
    assert allows and int(allows[-1]["pid"]) != zero_gpu_space.pid, "the handler ran in a forked worker"
    assert api.tokens_released()[-1] == f"token-{len(schedules)}", "the GPU was handed back"

    # A larger request asks for a longer GPU; the stand-in refuses it as ZeroGPU does when none is free.
    with pytest.raises(AppError, match="No GPU was available"):
        generate(client, "a big one", seed=1, steps=150, size=512, batch_size=2)
    assert [q for p, q in api.calls if p == "/schedule"][-1]["durationSeconds"] == "55"


def test_stop_reaches_the_worker_on_zerogpu(zero_gpu_space: ZeroGpuSpace) -> None:
    """Stop cannot set a flag in the forked worker; closing the stream must stop it there, within a step."""
    client = Client(zero_gpu_space.url, verbose=False)
    api = zero_gpu_space.api

    def schedules() -> int:
        return sum(path == "/schedule" for path, _ in api.calls)

    before = schedules()
    job = client.submit(
        prompt="a long job", negative_prompt="", sampler="Euler", steps=150, guidance_scale=7, width=64, height=64,
        seed=4444, batch_size=1, api_name="/txt2img",
    )  # fmt: skip
    with api.released:  # the job has a GPU: it runs in the worker now
        assert api.released.wait_for(lambda: schedules() > before, timeout=120)
    token = f"token-{before + 1}"
    # Its first streamed update (the heartbeat after a step) has reached us, so Gradio holds the stream and Stop
    # closes it. (A Stop before that cancels the task only: Gradio has no stream to close yet; see the README.)
    next(iter(job))
    job.cancel()
    with api.released:  # the worker hands the GPU back when the job has ended, stopped or finished
        assert api.released.wait_for(lambda: token in api.tokens_released(), timeout=300)
    saved = {path.name.split("-", 1)[1] for path in zero_gpu_space.outputs.rglob("*.png")}
    assert "4444.png" not in saved, "the job stopped: had it run its 150 steps it would have saved its picture"
    # The worker is handed to the next job (spaces asserts its queues are empty, so nothing of the stopped job
    # may arrive late), and it runs.
    _, seeds, _, _ = generate(client, "after the stop", seed=5555, steps=2)
    assert seeds == "5555"
