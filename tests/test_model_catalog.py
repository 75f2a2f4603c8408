"""The model picker's listing of a models folder, what it accepts typed in, and switching between what it lists."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest, ModelLoadError
from studio.model_catalog import ModelEntry, is_hub_id, list_models, resolve_choice, unet_family
from studio.requests import Txt2ImgRequest
from studio.system import model_line
from tests.conftest import SMALL, make_settings
from tests.ldm_checkpoint import save_ldm_checkpoint
from tests.test_loras import write_safetensors
from tests.tiny_lora import save_tiny_lora


@pytest.fixture(scope="module")
def models_dir(tiny_model: Path, other_tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder as people have one: a diffusers folder, a single-file checkpoint in a sub-folder, a LoRA
    folder, a stray LoRA and a VAE-like file beside the checkpoints, a pickle, and clutter."""
    folder = tmp_path_factory.mktemp("catalog") / "models"
    shutil.copytree(tiny_model, folder / "tiny-sd")
    save_ldm_checkpoint(other_tiny_model, folder / "checkpoints" / "tiny-single.safetensors")
    save_tiny_lora(tiny_model, folder / "lora" / "ink.safetensors")
    save_tiny_lora(tiny_model, folder / "stray-lora.safetensors", seed=1)
    write_safetensors(folder / "vae-ft-mse.safetensors", b"\x00" * 16)
    (folder / "old-model.ckpt").write_bytes(b"not really a pickle")
    (folder / "empty-folder").mkdir()
    (folder / "README.txt").write_text("models go here")
    return folder


def test_lists_diffusers_folders_and_single_files_only(models_dir: Path) -> None:
    entries = list_models(models_dir, skip=models_dir / "lora")
    assert [(e.name, e.kind) for e in entries] == [
        ("old-model.ckpt", "pickle"),
        ("tiny-sd", "diffusers"),
        ("tiny-single", "single file"),
    ]
    by_name = {e.name: e for e in entries}
    assert by_name["tiny-sd"].source == str(models_dir / "tiny-sd")
    assert by_name["tiny-single"].source == str(models_dir / "checkpoints" / "tiny-single.safetensors")
    assert by_name["tiny-single"].family == "SD 1.x", "from the checkpoint's CLIP text encoder keys"
    assert by_name["tiny-sd"].refused is None and by_name["tiny-single"].refused is None
    assert "--allow-pickle" in (by_name["old-model.ckpt"].refused or "")
    assert "--allow-pickle" in by_name["old-model.ckpt"].label


def test_pickles_are_offered_with_allow_pickle_and_missing_folders_list_nothing(models_dir: Path) -> None:
    entries = {e.name: e for e in list_models(models_dir, allow_pickle=True)}
    assert entries["old-model.ckpt"].refused is None
    assert "ink" not in entries, "LoRAs are not checkpoints even when the LoRA folder is not skipped"
    assert list_models(models_dir / "nowhere") == []


def test_unet_config_tells_the_family() -> None:
    assert unet_family({"cross_attention_dim": 768}) == "SD 1.x"
    assert unet_family({"cross_attention_dim": 1024}) == "SD 2.x"
    assert unet_family({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}) == "SDXL"
    assert unet_family({"cross_attention_dim": 32}) is None


def test_folder_family_comes_from_its_unet_config(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "sd21"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024}))
    (entry,) = list_models(tmp_path / "models")
    assert entry.family == "SD 2.x"
    assert entry.label == "sd21 (SD 2.x, diffusers)"


def test_typed_choices_are_listed_models_allowed_sources_or_hub_ids(models_dir: Path) -> None:
    entries = list_models(models_dir)
    single = str(models_dir / "checkpoints" / "tiny-single.safetensors")
    assert resolve_choice(single, entries) == single
    assert resolve_choice("tiny-single", entries) == single, "by name, as typed"
    assert resolve_choice("stabilityai/stable-diffusion-xl-base-1.0", entries) == (
        "stabilityai/stable-diffusion-xl-base-1.0"
    )
    assert resolve_choice("./elsewhere/model", entries, allowed=["./elsewhere/model"]) == "./elsewhere/model"
    with pytest.raises(InvalidRequest, match="not a model in the models folder nor a Hub id"):
        resolve_choice("/etc/passwd", entries)
    with pytest.raises(InvalidRequest, match="not a model in the models folder"):
        resolve_choice("uploads/evil.ckpt", entries)
    with pytest.raises(InvalidRequest, match="--allow-pickle"):
        resolve_choice("old-model.ckpt", entries)
    with pytest.raises(InvalidRequest, match="choose a model"):
        resolve_choice("  ", entries)
    assert not is_hub_id("../secrets/x") and not is_hub_id("a/b/c") and is_hub_id("org/model-v1.5")


@pytest.fixture
def picking_studio(models_dir: Path, tiny_model: Path, tmp_path: Path) -> Studio:
    # Offline, a single file takes its configs and tokenizer from a diffusers folder of its architecture.
    settings = make_settings(
        models_dir / "tiny-sd", tmp_path / "outputs", models_dir=models_dir, model_config=str(tiny_model)
    )
    return build_studio(settings)


def test_switch_between_a_folder_and_a_single_file_from_the_list(picking_studio: Studio, models_dir: Path) -> None:
    system, service = picking_studio.system, picking_studio.service
    options, value = system.choices()
    assert value == "tiny-sd", "the serving model is selected, by name"
    assert [choice for _, choice in options] == ["old-model.ckpt", "tiny-sd", "checkpoints/tiny-single.safetensors"]
    assert [label for label, _ in options] == [
        "old-model.ckpt (pickle) — a pickle file: start the studio with --allow-pickle to load it",
        "tiny-sd (diffusers)",
        "tiny-single (SD 1.x, single file)",
    ]
    request = Txt2ImgRequest(prompt="a red house", seed=3, **SMALL)
    first = service.txt2img(request)
    assert "Model: tiny-sd," in first.images[0].parameters

    loaded = system.switch(dict(options)["tiny-single (SD 1.x, single file)"])
    assert loaded.source.endswith("tiny-single.safetensors")
    assert system.choices()[1] == "checkpoints/tiny-single.safetensors"
    assert model_line(picking_studio.manager) == "**Model:** tiny-single.safetensors · SD 1.x · float32 · cpu"
    second = service.txt2img(request)
    assert "Model: tiny-single," in second.images[0].parameters
    assert not np.array_equal(np.asarray(first.images[0].image), np.asarray(second.images[0].image))

    system.switch("tiny-sd")
    assert np.array_equal(np.asarray(service.txt2img(request).images[0].image), np.asarray(first.images[0].image))


def test_a_failed_switch_keeps_the_model_serving(picking_studio: Studio, models_dir: Path) -> None:
    system = picking_studio.system
    serving = picking_studio.manager.current()
    broken = models_dir.parent / "broken-models"
    (broken / "bad").mkdir(parents=True)
    (broken / "bad" / "model_index.json").write_text("{not json")
    entries = [*system.models(), ModelEntry("bad", str(broken / "bad"), "diffusers")]
    with pytest.raises(ModelLoadError, match="Could not load model 'bad'"):
        picking_studio.manager.switch(resolve_choice("bad", entries))
    with pytest.raises(InvalidRequest, match="--allow-pickle"):
        system.switch("old-model.ckpt")
    assert picking_studio.manager.current() is serving
    assert model_line(picking_studio.manager).startswith("**Model:** tiny-sd · SD 1.x")
