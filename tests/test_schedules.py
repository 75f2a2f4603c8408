"""A1111's schedule types: names, which samplers follow them, and the noise levels each sampler really visits,
checked against A1111's formulas written here again, step by step in plain Python (k-diffusion's discrete-model
helpers, and modules/sd_schedulers.py's schedule functions)."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler
from scipy.stats import beta as beta_distribution

from studio import model_manager
from studio.api.samplers import sampler_for, scheduler_list
from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.metadata import read_metadata
from studio.pnginfo import settings_from_metadata
from studio.requests import Txt2ImgRequest
from studio.schedulers import SAMPLER_NAMES, build_scheduler, check_schedule, schedules_for
from studio.schedules import SCHEDULE_LABELS, schedule_label

SD15 = PNDMScheduler(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
).config
A1111_LABELS = (
    "Automatic",
    "Uniform",
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
)
STEP_COUNTS = (4, 10, 25)
FOLLOW_EVERY_SCHEDULE = ("Euler", "Heun", "LMS", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "UniPC")
STEP_ON_TIMESTEPS = ("Euler a", "DDIM", "DDPM", "PNDM")


# --- A1111's formulas, written out independently --------------------------------------------------------------


def model_sigmas() -> list[float]:
    """Stable Diffusion 1.x's noise level at each of its 1000 training timesteps (scaled linear betas)."""
    betas = [(math.sqrt(0.00085) + (math.sqrt(0.012) - math.sqrt(0.00085)) * i / 999) ** 2 for i in range(1000)]
    sigmas, product = [], 1.0
    for b in betas:
        product *= 1 - b
        sigmas.append(math.sqrt((1 - product) / product))
    return sigmas


SIGMAS = model_sigmas()
LOG_SIGMAS = [math.log(s) for s in SIGMAS]


def t_to_sigma(t: float) -> float:
    low = math.floor(t)
    high = min(low + 1, len(SIGMAS) - 1)
    w = t - low
    return math.exp((1 - w) * LOG_SIGMAS[low] + w * LOG_SIGMAS[high])


def sigma_to_t(sigma: float) -> float:
    log_sigma = math.log(sigma)
    low = max(i for i in range(len(SIGMAS) - 1) if LOG_SIGMAS[i] <= log_sigma) if log_sigma > LOG_SIGMAS[0] else 0
    w = (LOG_SIGMAS[low] - log_sigma) / (LOG_SIGMAS[low] - LOG_SIGMAS[low + 1])
    w = min(max(w, 0.0), 1.0)
    return (1 - w) * low + w * (low + 1)


def linspace(start: float, stop: float, n: int) -> list[float]:
    return [start + (stop - start) * i / (n - 1) for i in range(n)] if n > 1 else [start]


def a1111(label: str, n: int) -> list[float]:
    low, high = SIGMAS[0], SIGMAS[-1]
    if label in ("Uniform", "Normal"):
        return [t_to_sigma(t) for t in linspace(sigma_to_t(high), sigma_to_t(low), n)] + [0.0]
    if label == "SGM Uniform":
        return [t_to_sigma(t) for t in linspace(sigma_to_t(high), sigma_to_t(low), n + 1)[:-1]] + [0.0]
    if label == "Karras":
        rho = 7.0
        return [(high ** (1 / rho) + r * (low ** (1 / rho) - high ** (1 / rho))) ** rho for r in linspace(0, 1, n)] + [
            0.0
        ]
    if label in ("Exponential", "Polyexponential"):  # polyexponential with A1111's rho of 1
        return [math.exp(x) for x in linspace(math.log(high), math.log(low), n)] + [0.0]
    if label == "KL Optimal":
        return [math.tan(i / n * math.atan(low) + (1 - i / n) * math.atan(high)) for i in range(n + 1)]
    if label == "Align Your Steps":
        table = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
        if n == len(table):
            return [*table, 0.0]
        logs = [math.log(s) for s in reversed(table)]
        points = []
        for x in linspace(0, 1, n):
            position = x * (len(table) - 1)
            i = min(int(position), len(table) - 2)
            points.append(math.exp(logs[i] + (position - i) * (logs[i + 1] - logs[i])))
        return [*reversed(points), 0.0]
    if label == "Simple":
        return [SIGMAS[-(1 + int(x * len(SIGMAS) / n))] for x in range(n)] + [0.0]
    if label == "DDIM":
        stride = max(len(SIGMAS) // n, 1)
        return [*[SIGMAS[x] for x in range(1, len(SIGMAS), stride)][::-1], 0.0]
    if label == "Beta":
        return [low + beta_distribution.ppf(1 - i / (n - 1), 0.6, 0.6) * (high - low) for i in range(n)] + [0.0]
    raise AssertionError(label)


# --- Names ----------------------------------------------------------------------------------------------------


def test_all_twelve_of_a1111s_schedule_types_are_offered_in_its_order() -> None:
    assert SCHEDULE_LABELS == A1111_LABELS
    listed = scheduler_list()
    assert [entry["label"] for entry in listed] == list(A1111_LABELS)
    assert [entry["name"] for entry in listed][:6] == [
        "automatic",
        "uniform",
        "karras",
        "exponential",
        "polyexponential",
        "sgm_uniform",
    ]
    assert next(entry for entry in listed if entry["name"] == "karras")["default_rho"] == 7.0
    assert next(entry for entry in listed if entry["name"] == "sgm_uniform")["aliases"] == ["SGMUniform"]


@pytest.mark.parametrize(
    ("written", "label"),
    [
        ("normal", "Normal"),
        ("SIMPLE", "Simple"),
        ("sgm_uniform", "SGM Uniform"),
        ("SGM uniform", "SGM Uniform"),
        ("SGMUniform", "SGM Uniform"),
        ("kl_optimal", "KL Optimal"),
        ("align_your_steps", "Align Your Steps"),
        ("Align Your Steps", "Align Your Steps"),
        ("polyExponential", "Polyexponential"),
        ("", "Automatic"),
        (None, "Automatic"),
    ],
)
def test_schedules_are_read_by_name_or_label_in_any_case(written: str | None, label: str) -> None:
    assert schedule_label(written) == label


def test_an_unknown_schedule_names_the_twelve() -> None:
    with pytest.raises(
        InvalidRequest, match=re.escape("unknown scheduler 'cosine'; choose one of: Automatic, Uniform")
    ):
        schedule_label("cosine")


# --- Which samplers follow which ------------------------------------------------------------------------------


def test_normal_and_simple_work_with_every_sampler_a_client_sends_by_default() -> None:
    for name in SAMPLER_NAMES:
        if name == "LCM":
            continue
        assert {"Normal", "Simple"} <= set(schedules_for(name)), name


def test_a_schedule_a_sampler_cannot_follow_is_refused_naming_those_it_can() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_schedule("Euler a", "karras")
    message = str(refused.value)
    assert message.startswith("the Euler a sampler cannot follow the Karras schedule here; with Euler a choose one of:")
    assert "Automatic, Uniform, SGM Uniform, Simple, Normal, DDIM" in message
    assert "Euler or DPM++ 2M" in message
    with pytest.raises(InvalidRequest, match=re.escape("with LCM choose one of: Automatic (or")):
        check_schedule("LCM", "Normal")


# --- The noise levels each sampler visits ---------------------------------------------------------------------


def visited(name: str, label: str, steps: int) -> torch.Tensor:
    scheduler = build_scheduler(name, SD15, seeds=[1], schedule=label)
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("name", FOLLOW_EVERY_SCHEDULE)
@pytest.mark.parametrize("label", A1111_LABELS[1:])
def test_samplers_taking_noise_levels_visit_a1111s_exactly(name: str, label: str) -> None:
    for steps in STEP_COUNTS:
        expected = a1111(label, steps)
        levels = torch.unique_consecutive(visited(name, label, steps).sigmas).tolist()  # Heun and SDE repeat levels
        assert len(levels) == len(expected), (steps, levels)
        np.testing.assert_allclose(levels[:-1], expected[:-1], rtol=2e-4, err_msg=f"{label}, {steps} steps")
        # KL Optimal ends at the lowest training level where the scheduler can end there, else at 0.
        assert levels[-1] == pytest.approx(expected[-1], rel=1e-4) or levels[-1] == 0.0


@pytest.mark.parametrize("name", STEP_ON_TIMESTEPS)
@pytest.mark.parametrize("label", ["Uniform", "Normal", "SGM Uniform", "Simple", "DDIM"])
def test_samplers_stepping_on_timesteps_visit_a1111s_timesteps_rounded(name: str, label: str) -> None:
    for steps in STEP_COUNTS:
        expected = [sigma_to_t(sigma) for sigma in a1111(label, steps)[:-1]]
        timesteps = torch.unique_consecutive(visited(name, label, steps).timesteps).tolist()  # PNDM repeats one
        assert len(timesteps) == len(expected)
        assert max(abs(a - b) for a, b in zip(timesteps, expected, strict=True)) <= 1.5, (label, steps, timesteps)


def test_automatic_keeps_each_samplers_own_schedule() -> None:
    own = build_scheduler("DPM++ 2M Karras", SD15, seeds=[1])
    assert own.config.use_karras_sigmas
    plain = build_scheduler("Euler", SD15, seeds=[1], schedule="Automatic")
    plain.set_timesteps(10)
    assert not np.allclose(plain.sigmas[:-1].numpy(), a1111("Karras", 10)[:-1], rtol=1e-2)


def test_each_scheduler_is_its_own_and_the_levels_are_computed_once() -> None:
    first, second = visited("Euler", "Beta", 10), visited("Euler", "Beta", 10)
    assert first is not second
    assert torch.equal(first.sigmas, second.sigmas)
    from studio.schedules import _cached

    assert _cached.cache_info().hits > 0


# --- A1111's API names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler_name", "scheduler", "expected"),
    [
        ("Euler", "normal", ("Euler", "Normal")),
        ("k_euler_a", "simple", ("Euler a", "Simple")),
        ("DPM++ 2M", "Karras", ("DPM++ 2M Karras", "Automatic")),
        ("DPM++ 2M Karras", "Exponential", ("DPM++ 2M", "Exponential")),
        ("DPM++ 2M Karras", "Uniform", ("DPM++ 2M", "Uniform")),
        ("Euler", "Karras", ("Euler", "Karras")),
        ("DPM++ SDE", "Uniform", ("DPM++ SDE Karras", "Uniform")),
        ("DDIM", "sgm_uniform", ("DDIM", "SGM Uniform")),
    ],
)
def test_a1111_sampler_and_scheduler_become_the_studios(
    sampler_name: str, scheduler: str, expected: tuple[str, str]
) -> None:
    assert sampler_for(sampler_name, scheduler) == expected


# --- Through the service --------------------------------------------------------------------------------------


def test_both_passes_follow_the_schedule_type_and_the_parameters_say_it(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, str]] = []

    def recording(name: str, config: object, seeds: object, schedule: str = "Automatic", **options: object) -> object:
        built.append((name, schedule))
        return build_scheduler(name, config, seeds, schedule, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(model_manager, "build_scheduler", recording)
    request = Txt2ImgRequest(
        "a red house", sampler="Euler", scheduler="align_your_steps", num_inference_steps=3, width=64, height=64,
        seed=1, enable_hr=True, hr_scale=1.5, hr_sampler_name="DDIM", hr_second_pass_steps=2,
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match="the DDIM sampler cannot follow the Align Your Steps schedule"):
        studio.service.txt2img(request)
    result = studio.service.txt2img(replace(request, scheduler="normal"))
    assert built == [("Euler", "Normal"), ("DDIM", "Normal")]
    text = result.images[0].parameters
    assert "Sampler: Euler, Schedule type: Normal, CFG scale: 7" in text
    assert settings_from_metadata(read_metadata(result.images[0].image), max_steps=150, max_side=512).scheduler == (
        "Normal"
    )
    plain = studio.service.txt2img(replace(request, enable_hr=False, scheduler="Automatic"))
    assert "Schedule type" not in plain.images[0].parameters
