"""Few-step models are recognised and open with their own defaults; the LCM sampler runs and knows its limit."""

import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.few_step import LCM, STANDARD, TURBO, defaults_for_source, recognise
from studio.model_manager import Task
from studio.requests import CompareRequest, Txt2ImgRequest
from studio.ui.controls import build_generation_controls
from tests.conftest import SMALL, make_settings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stabilityai/sd-turbo", TURBO),
        ("stabilityai/sdxl-turbo", TURBO),
        ("./models/sd_xl_turbo_1.0_fp16.safetensors", TURBO),
        ("/models/sd_turbo.safetensors", TURBO),
        ("latent-consistency/lcm-lora-sdv1-5", LCM),
        ("./models/Dreamshaper_LCM", LCM),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", STANDARD),
        ("Lykon/dreamshaper-xl-turbo", STANDARD),  # a community merge: its own settings, not the official ones
        ("./models/alcmene", STANDARD),
    ],
)
def test_models_are_recognised_by_name(name: str, expected: object) -> None:
    assert defaults_for_source(name) == expected


def test_an_lcm_scheduler_config_marks_an_lcm_model(tmp_path: Path) -> None:
    folder = tmp_path / "my-fused-model"
    (folder / "scheduler").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "LCMScheduler"}))
    assert defaults_for_source(str(folder)) == LCM
    assert recognise(["my-fused-model"], "PNDMScheduler") == STANDARD


def test_defaults_turn_cfg_off_and_take_few_steps() -> None:
    assert (TURBO.sampler, TURBO.num_inference_steps, TURBO.guidance_scale) == ("Euler a", 2, 0.0)
    assert (LCM.sampler, LCM.num_inference_steps, LCM.guidance_scale) == ("LCM", 4, 1.0)
    assert (STANDARD.sampler, STANDARD.num_inference_steps, STANDARD.guidance_scale) == ("DPM++ 2M Karras", 25, 7.0)
    assert TURBO.few_step and LCM.few_step and not STANDARD.few_step


def test_the_tabs_open_with_the_models_defaults(tmp_path: Path) -> None:
    for model, expected in (
        ("stabilityai/sdxl-turbo", TURBO),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", STANDARD),
    ):
        with gr.Blocks():
            controls = build_generation_controls("txt2img", build_studio(make_settings(model, None)))
        assert controls.sampler.value == expected.sampler
        assert controls.steps.value == expected.num_inference_steps
        assert controls.guidance_scale.value == expected.guidance_scale


@pytest.fixture(scope="module")
def turbo_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model under the official SD-Turbo name (its scheduler keeps the tiny model's "leading" spacing)."""
    folder = tmp_path_factory.mktemp("turbo") / "sd-turbo"
    shutil.copytree(tiny_model, folder)
    return folder


def test_a_loaded_turbo_model_samples_on_trailing_timesteps(turbo_model: Path) -> None:
    studio = build_studio(make_settings(turbo_model, None))
    model = studio.manager.current()
    assert model.defaults == TURBO
    assert model.pipeline.scheduler.config.timestep_spacing == "trailing"
    request = Txt2ImgRequest(
        "a red house",
        sampler=TURBO.sampler,
        num_inference_steps=1,
        guidance_scale=TURBO.guidance_scale,
        seed=3,
        width=64,
        height=64,
    )
    with studio.manager.job(Task.TXT2IMG, TURBO.sampler, [3]) as job:
        job.pipeline.scheduler.set_timesteps(1)
        assert int(job.pipeline.scheduler.timesteps[0]) == 999, "one step starts from pure noise"
    result = studio.service.txt2img(request)
    assert result.images[0].image.size == (64, 64)


def test_the_lcm_sampler_generates_and_explains_its_limit(studio: Studio) -> None:
    result = studio.service.txt2img(Txt2ImgRequest("a cat", sampler="LCM", guidance_scale=1.0, seed=1, **SMALL))
    assert "Sampler: LCM" in result.images[0].parameters
    with pytest.raises(InvalidRequest, match="the LCM sampler takes at most 50 steps"):
        studio.service.txt2img(Txt2ImgRequest("a cat", sampler="LCM", num_inference_steps=60, width=64, height=64))
    with pytest.raises(InvalidRequest, match="the LCM sampler takes at most 50 steps"):
        studio.service.compare(
            CompareRequest(("a cat", "a dog"), num_inference_steps=60, axis="Sampler", axis_values=("Euler", "LCM"))
        )
