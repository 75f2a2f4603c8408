"""The offline default: with no --model, the studio starts on the micro model when the default Hub model is
neither in the local cache nor downloadable, and says so; ``--model micro`` selects it explicitly. No test here
touches the network: the Hub is offline for the whole suite, or its answer is replaced."""

from dataclasses import replace
from pathlib import Path

import gradio as gr
import httpx
import pytest
from huggingface_hub import HfApi, constants

from studio import settings as settings_module
from studio.composition import Studio, build_studio, choose_model
from studio.few_step import STANDARD
from studio.hub import hub_model_unavailable
from studio.micro.location import MICRO_CONTROLNET, MICRO_FOLDER, MICRO_MODEL
from studio.settings import DEFAULT_MODEL, Settings
from studio.sources import is_micro_model, native_side_hint
from studio.ui.controls import build_generation_controls
from studio.ui.header import model_status
from studio.ui.inpaint import build_inpaint_tab
from studio.ui.txt2img import build_txt2img_tab

UNCACHED = "nobody/not-in-the-cache"


def cache_a_model(repo_id: str) -> None:
    """A Hub model in the local cache, as huggingface_hub lays it out (only the file the check looks for)."""
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "model_index.json").write_text("{}")
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("0123456789abcdef")


def test_no_model_offline_and_not_cached_starts_on_the_micro_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "DEFAULT_MODEL", UNCACHED)
    settings = Settings.from_cli(["--device", "cpu", "--no-save"], environ={"HF_HUB_OFFLINE": "1"})
    assert settings.micro_fallback and settings.model == UNCACHED
    studio = build_studio(settings)
    assert studio.manager.source == MICRO_MODEL
    header = model_status(studio)
    assert "micro model" in header and UNCACHED in header and "not in the local Hugging Face cache" in header
    assert "--model" in header, "the header says how to choose another model"
    assert studio.native_side == 64, "the size sliders start at the micro model's 64x64"


def test_on_the_micro_fallback_the_tabs_open_with_the_micro_models_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings name the Hub default, but the studio serves the micro model: the sampler, steps and CFG the
    tabs open with are the micro model's, not those a Turbo-named default would have had."""
    monkeypatch.setattr(settings_module, "DEFAULT_MODEL", "stabilityai/sd-turbo")
    settings = Settings.from_cli(["--device", "cpu", "--no-save"], environ={"HF_HUB_OFFLINE": "1"})
    studio = build_studio(settings)
    assert studio.manager.source == MICRO_MODEL and settings.model == "stabilityai/sd-turbo"
    assert studio.generation_defaults == STANDARD
    with gr.Blocks():
        controls = build_generation_controls("txt2img", studio)
    assert (controls.sampler.value, controls.steps.value, controls.guidance_scale.value) == ("DPM++ 2M Karras", 25, 7)


def test_a_cached_default_is_used_even_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    cached = "somebody/cached-model"
    cache_a_model(cached)
    monkeypatch.setattr(settings_module, "DEFAULT_MODEL", cached)
    settings = Settings.from_cli(["--device", "cpu"], environ={"HF_HUB_OFFLINE": "1"})
    assert choose_model(settings) == (cached, None)


def test_an_unreachable_hub_counts_as_cannot_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_args: object, **_kwargs: object) -> None:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "model_info", no_network)
    reason = hub_model_unavailable(UNCACHED, offline=False)
    assert reason is not None and "cannot be downloaded" in reason


def test_a_reachable_hub_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HfApi, "model_info", lambda *_args, **_kwargs: object())
    assert hub_model_unavailable(UNCACHED, offline=False) is None
    settings = Settings(model=UNCACHED, micro_fallback=True, device="cpu", outputs=None)
    assert choose_model(settings) == (UNCACHED, None)


def test_a_model_that_was_asked_for_is_never_replaced(tmp_path: Path) -> None:
    for argv, environ in (([f"--model={UNCACHED}"], {}), ([], {"STUDIO_MODEL": UNCACHED})):
        settings = Settings.from_cli(argv, environ={"HF_HUB_OFFLINE": "1", **environ})
        assert not settings.micro_fallback
        assert choose_model(settings) == (UNCACHED, None), "it fails to load later, with its own message"


def test_model_micro_selects_the_micro_model_and_its_controlnet() -> None:
    settings = Settings.from_cli(["--model", "micro", "--device", "cpu", "--no-save"], environ={"HF_HUB_OFFLINE": "1"})
    studio = build_studio(settings)
    assert studio.model_note is None
    assert model_status(studio).startswith(f"**Model:** {MICRO_MODEL} ")
    model = studio.manager.current()
    assert model.family == "Micro"
    assert studio.manager.native_resolution() == 64 == studio.native_side
    assert studio.manager.controlnet_for(model) == MICRO_CONTROLNET
    assert "micro" in model_status(studio) and "Micro" in model_status(studio)


def test_native_side_is_read_from_a_folder_without_loading_it(tiny_model: Path) -> None:
    assert native_side_hint(str(MICRO_FOLDER)) == native_side_hint(MICRO_MODEL) == 64
    assert native_side_hint(str(tiny_model)) == 64  # the tiny test model: 32 latents, one downsampling
    assert native_side_hint(DEFAULT_MODEL) is None, "a Hub id is not read before it loads"


def test_the_inpaint_brush_covers_the_same_share_of_every_models_pictures() -> None:
    """24 pixels of radius suit SD 1.x's 512-pixel pictures but would cover most of a 64x64 one."""
    settings = Settings.from_cli(["--model", "micro", "--device", "cpu", "--no-save"], environ={"HF_HUB_OFFLINE": "1"})
    micro = build_studio(settings)
    sizes = {}
    for studio in (micro, replace(micro, native_side=512), replace(micro, native_side=1024)):
        with gr.Blocks() as demo:
            build_inpaint_tab(studio)
        (editor,) = (block for block in demo.blocks.values() if block.elem_id == "inpaint-editor")
        assert editor.eraser.default_size == editor.brush.default_size
        sizes[studio.native_side] = editor.brush.default_size
    assert sizes == {64: 3, 512: 24, 1024: 48}


def shown_examples(studio: Studio) -> list[str]:
    """The prompts of the examples under the text to image tab as the page lists them, and first the prompt box's
    hint."""
    with gr.Blocks() as demo:
        build_txt2img_tab(studio)
    (dataset,) = (block for block in demo.blocks.values() if block.elem_id == "txt2img-examples")
    (prompt,) = (block for block in demo.blocks.values() if block.elem_id == "txt2img-prompt")
    return [prompt.placeholder, *(sample[0] for sample in dataset.samples)]


def test_the_examples_are_the_micro_models_own_when_it_is_served(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the micro fallback a first run's examples ask for its colours and shapes, not for lighthouses at 512x512
    (which it cannot draw); any other model gets the Stable Diffusion examples."""
    monkeypatch.setattr(settings_module, "DEFAULT_MODEL", UNCACHED)
    fallback = build_studio(Settings.from_cli(["--device", "cpu", "--no-save"], environ={"HF_HUB_OFFLINE": "1"}))
    assert fallback.manager.source == MICRO_MODEL
    hint, *micro_prompts = shown_examples(fallback)
    assert micro_prompts and all(prompt.endswith("background") for prompt in micro_prompts)
    assert hint == f"What to draw, e.g. {micro_prompts[0]}", "the prompt box's hint is one it can draw"
    other = build_studio(Settings.from_cli(["--model", str(tiny_model), "--device", "cpu", "--no-save"]))
    sd_hint, *sd_prompts = shown_examples(other)
    assert "lighthouse" in sd_prompts[0] and "lighthouse" in sd_hint and not set(sd_prompts) & set(micro_prompts)
    retrained = tmp_path / "retrained" / "unet"
    retrained.mkdir(parents=True)
    (retrained / "config.json").write_bytes((MICRO_FOLDER / "unet" / "config.json").read_bytes())
    assert is_micro_model(MICRO_MODEL) and is_micro_model(str(retrained.parent)), "a retrained one is micro too"
    assert not is_micro_model(str(tiny_model)) and not is_micro_model(DEFAULT_MODEL)
