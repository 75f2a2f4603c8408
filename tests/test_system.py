"""The System panel's service: memory in use and free, what is loaded (with sizes), and unloading everything."""

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.composition import Studio, build_studio
from studio.model_manager import Task
from studio.module_cache import module_bytes
from studio.requests import ControlNetRequest, Txt2ImgRequest
from studio.system import DeviceMemory, LoadedItem, MemoryStatus, describe_memory, format_bytes, model_line
from tests.conftest import make_settings
from tests.tiny_lora import save_tiny_lora

FAST = {"width": 64, "height": 64, "num_inference_steps": 2}


@pytest.fixture
def busy_studio(tiny_model: Path, tiny_controlnet: Path, tmp_path: Path) -> Studio:
    """A studio that has made a txt2img image with a LoRA and a ControlNet image: a model, a cached ControlNet
    and a cached LoRA file in memory."""
    save_tiny_lora(tiny_model, tmp_path / "lora" / "ink.safetensors")
    studio = build_studio(
        make_settings(tiny_model, None, lora_dir=tmp_path / "lora", controlnet_model=str(tiny_controlnet))
    )
    studio.service.txt2img(Txt2ImgRequest(prompt="a red house <lora:ink:1>", seed=1, **FAST))
    edges = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(edges).ellipse((16, 16, 47, 47), outline="black", width=3)
    studio.service.controlnet(ControlNetRequest(edges, "a red ball", seed=1, **FAST))
    return studio


def test_memory_status_lists_what_is_loaded_and_unload_frees_it(busy_studio: Studio) -> None:
    status = busy_studio.system.memory()
    (ram,) = [d for d in status.devices if d.name == "CPU (RAM)"]
    assert 0 < ram.used < ram.total and ram.free == ram.total - ram.used
    assert ram.held.startswith("this studio: ")
    by_kind = {item.kind: item for item in status.loaded}
    assert set(by_kind) == {"model (SD 1.x)", "ControlNet", "LoRA file"}
    pipeline = busy_studio.manager.current().pipeline
    expected = sum(module_bytes(getattr(pipeline, name)) for name in ("unet", "vae", "text_encoder"))
    assert by_kind["model (SD 1.x)"] == LoadedItem("model (SD 1.x)", "tiny-sd", expected, "cpu")
    assert by_kind["ControlNet"].name == "tiny-controlnet" and by_kind["ControlNet"].size > 0
    assert by_kind["LoRA file"].name == "ink" and by_kind["LoRA file"].size > 0
    text = describe_memory(status)
    assert "| model (SD 1.x) | tiny-sd | " in text and "| ControlNet | tiny-controlnet |" in text
    assert "**CPU (RAM):** " in text and " free of " in text

    image = busy_studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=5, **FAST)).images[0].image
    busy_studio.system.unload()
    assert busy_studio.manager.loaded is None
    assert busy_studio.system.memory().loaded == (), "the model, the ControlNet and the LoRA file are gone"
    assert "No models loaded." in describe_memory(busy_studio.system.memory())
    assert model_line(busy_studio.manager).endswith("not loaded: loads on the next generation")
    again = busy_studio.service.txt2img(Txt2ImgRequest(prompt="a cat", seed=5, **FAST)).images[0].image
    reloaded = busy_studio.manager.loaded
    assert reloaded is not None and reloaded.pipeline is not pipeline, "loaded again, from disk"
    assert np.array_equal(np.asarray(again), np.asarray(image))


def test_unload_waits_for_the_running_job(studio: Studio) -> None:
    manager = studio.manager
    unloaded = threading.Event()
    with manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        worker = threading.Thread(target=lambda: (manager.unload(), unloaded.set()))
        worker.start()
        assert not unloaded.wait(timeout=0.5), "unloading went ahead while a job held the GPU"
        assert manager.loaded is not None and job.model is manager.loaded
    worker.join(timeout=60)
    assert unloaded.is_set() and manager.loaded is None


def test_memory_text_for_a_gpu_and_sizes() -> None:
    status = MemoryStatus(
        (DeviceMemory("GPU (NVIDIA H200)", 3 * 2**30, 140 * 2**30, "PyTorch: 2.5 GB allocated"),),
        (),
    )
    assert describe_memory(status).startswith(
        "**GPU (NVIDIA H200):** 3.0 GB used, 137.0 GB free of 140.0 GB (PyTorch: 2.5 GB allocated)"
    )
    assert (format_bytes(512), format_bytes(3 * 2**20)) == ("512 B", "3.0 MB")
    unreadable = MemoryStatus((DeviceMemory("GPU (cuda)", 0, 0, "not readable from this process (RuntimeError)"),), ())
    assert describe_memory(unreadable).startswith("**GPU (cuda):** not readable from this process")
