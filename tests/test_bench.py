"""The GPU benchmark can only run where a GPU is lent, so what can be checked here is: its configs are the real
architectures (parameter counts equal the published models'), and its dry run goes through a phase on the CPU.
No timing is checked: benchmarks report numbers, tests do not judge them."""

import importlib
import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from bench import gpu


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_configs_are_sd15_and_sdxl() -> None:
    """Built on the meta device (no memory, no time): the counts of the published checkpoints."""
    with torch.device("meta"):
        assert parameters(UNet2DConditionModel(**gpu.sd15_unet_config(dry=False))) == 859_520_964
        assert parameters(UNet2DConditionModel(**gpu.sdxl_unet_config(dry=False))) == 2_567_463_684
        assert parameters(AutoencoderKL(**gpu.vae_config(dry=False, sdxl=False))) == 83_653_863
        assert parameters(CLIPTextModel(gpu.clip_config(dry=False, big=False))) == 123_060_480
        assert parameters(CLIPTextModelWithProjection(gpu.clip_config(dry=False, big=True))) == 694_659_840


def test_a_dry_run_goes_through_setup_and_a_phase(capsys: pytest.CaptureFixture[str]) -> None:
    document = gpu.main(["--dry-run", "--phases", "vae"])
    assert document is not None
    assert json.loads(capsys.readouterr().out) == document, "the JSON document is what it prints"
    assert document["errors"] == {} and document["skipped"] == {}
    assert set(document["phases"]) == {"setup", "vae"}
    assert set(document["phases"]["vae"]) >= {"64", "80", "96"}
    assert set(document["phases"]["vae"]["96"]) == {"whole", "tiled"}
    assert set(document["targets"]) == {
        "sd15_batch_1_compiled_ms_per_cfg_step",
        "sd15_batch_1_compiled_speedup_over_plain",
        "sd15_batch_8_compiled_images_per_s_over_plain",
        "all_tasks_resident_over_base_plus_controlnet_weights",
    }


@pytest.mark.parametrize("name", ["studio_overhead", "task_derivation", "compare_batching", "preview_overhead"])
def test_the_cpu_benchmarks_run_quick(name: str) -> None:
    """--quick on the tiny model, in this process (the memory and start-up ones start processes of their own and
    were left to be run by hand): each returns its JSON document, whose numbers are not judged here."""
    module = importlib.import_module(f"bench.{name}")
    document = module.run(quick=True)
    assert document["benchmark"] == name and document["quick"] is True
    assert json.loads(json.dumps(document)) == document
    assert {"date", "machine", "torch", "diffusers"} <= set(document)


@pytest.mark.parametrize("name", ["task_memory", "startup"])
def test_the_process_starting_benchmarks_import(name: str) -> None:
    assert importlib.import_module(f"bench.{name}") is not None
