"""The manager's invariants: shared weights, untouched base, per-request schedulers, safe switching."""

import threading
from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from studio.devices import resolve_placement
from studio.errors import ModelLoadError
from studio.model_manager import ModelManager, Task

CPU = resolve_placement("cpu", "auto")


def test_loads_lazily_from_disk(tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    assert manager.loaded is None
    model = manager.current()
    assert manager.loaded is model
    assert model.family == "SD 1.x"
    assert model.pipeline.dtype == torch.float32
    assert manager.current() is model, "loaded once"


def test_attention_runs_on_sdpa(tiny_model: Path) -> None:
    unet = ModelManager(str(tiny_model), CPU).current().pipeline.unet
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())


def test_derived_pipeline_shares_the_base_modules(tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    base = manager.current().pipeline
    with manager.job(Task.TXT2IMG, "Euler a", [1]) as job:
        derived = job.pipeline
        assert derived is not base
        for name in ("unet", "vae", "text_encoder", "tokenizer"):
            assert getattr(derived, name) is getattr(base, name), name
        assert derived.scheduler is not base.scheduler
        assert type(derived.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert type(base.scheduler).__name__ == "PNDMScheduler", "the base keeps its own scheduler"


def test_deriving_keeps_the_base_dtype(tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), resolve_placement("cpu", "bfloat16"))
    base = manager.current().pipeline
    with manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        assert job.pipeline.unet.dtype == torch.bfloat16
    assert base.unet.dtype == torch.bfloat16
    assert base.vae.dtype == torch.bfloat16
    assert base.text_encoder.dtype == torch.bfloat16


def test_switch_replaces_the_model(tiny_model: Path, other_tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    first = manager.current()
    second = manager.switch(str(other_tiny_model))
    assert manager.current() is second
    assert second is not first
    assert manager.source == str(other_tiny_model)
    assert not torch.equal(next(first.pipeline.unet.parameters()), next(second.pipeline.unet.parameters()))


@pytest.mark.parametrize("bad", ["missing", "not-a-model", "corrupt"])
def test_failed_switch_keeps_the_old_model_serving(tiny_model: Path, tmp_path: Path, bad: str) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    serving = manager.current()
    if bad == "missing":
        source = tmp_path / "no-such-model"
    elif bad == "not-a-model":
        source = tmp_path / "folder"
        source.mkdir()
    else:
        source = tmp_path / "broken.safetensors"
        source.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="Could not load model|not a diffusers model"):
        manager.switch(str(source))
    assert manager.current() is serving
    assert manager.source == str(tiny_model)


def test_switching_while_a_job_runs_leaves_its_weights_alone(tiny_model: Path, other_tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    with manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        unet_in_use = job.pipeline.unet
        weight = next(unet_in_use.parameters()).clone()
        switcher = threading.Thread(target=manager.switch, args=(str(other_tiny_model),))
        switcher.start()
        switcher.join(timeout=60)
        assert not switcher.is_alive(), "switching waits for no running job"
        assert manager.source == str(other_tiny_model)
        assert job.pipeline.unet is unet_in_use
        assert torch.equal(next(unet_in_use.parameters()), weight)


def test_runs_hold_the_gpu_one_at_a_time(tiny_model: Path) -> None:
    manager = ModelManager(str(tiny_model), CPU)
    entered = threading.Event()
    with manager.job(Task.TXT2IMG, "Euler", [1]):

        def second_job() -> None:
            with manager.job(Task.TXT2IMG, "Euler", [1]):
                entered.set()

        worker = threading.Thread(target=second_job)
        worker.start()
        assert not entered.wait(timeout=0.5), "a second job entered while the first held the GPU"
    worker.join(timeout=30)
    assert entered.is_set()


def test_offline_hub_model_says_what_to_do() -> None:
    manager = ModelManager("stable-diffusion-v1-5/stable-diffusion-v1-5", CPU, offline=True)
    with pytest.raises(ModelLoadError) as caught:
        manager.current()
    message = str(caught.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "offline" in message
    assert "--model" in message
    assert "local diffusers folder" in message


def test_missing_local_model_is_named() -> None:
    manager = ModelManager("./models/nope", CPU)
    with pytest.raises(ModelLoadError, match="Could not load model 'nope': no such file or folder"):
        manager.current()


def test_memory_savers_are_applied_when_asked(tiny_model: Path) -> None:
    from diffusers.models.attention_processor import SlicedAttnProcessor

    from studio.loading import MemoryOptions

    memory = MemoryOptions(attention_slicing=True, vae_slicing=True, vae_tiling=True)
    pipeline = ModelManager(str(tiny_model), CPU, memory=memory).current().pipeline
    assert any(isinstance(p, SlicedAttnProcessor) for p in pipeline.unet.attn_processors.values())
    assert pipeline.vae.use_slicing and pipeline.vae.use_tiling
    plain = ModelManager(str(tiny_model), CPU).current().pipeline
    assert not plain.vae.use_slicing and not plain.vae.use_tiling
