import pytest
from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

from studio.errors import InvalidRequest
from studio.schedulers import SAMPLER_NAMES, build_scheduler, check_sampler_steps

SD15_SCHEDULER = PNDMScheduler(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
).config

A1111_NAMES = (
    "Euler",
    "Euler a",
    "Heun",
    "LMS",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "DDPM",
    "PNDM",
    "UniPC",
    "LCM",
)


def test_every_a1111_name_is_offered() -> None:
    assert set(A1111_NAMES) <= set(SAMPLER_NAMES)


@pytest.mark.parametrize("name", A1111_NAMES)
def test_each_sampler_builds_and_keeps_the_model_schedule(name: str) -> None:
    scheduler = build_scheduler(name, SD15_SCHEDULER, seeds=[1])
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == 0.00085
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10


def test_karras_variant_differs_from_plain() -> None:
    karras = build_scheduler("DPM++ 2M Karras", SD15_SCHEDULER, seeds=[1])
    plain = build_scheduler("DPM++ 2M", SD15_SCHEDULER, seeds=[1])
    assert isinstance(karras, DPMSolverMultistepScheduler)
    assert karras.config.use_karras_sigmas
    assert not plain.config.use_karras_sigmas


def test_sde_sampler_is_seeded_per_image() -> None:
    scheduler = build_scheduler("DPM++ SDE Karras", SD15_SCHEDULER, seeds=[7, 8])
    assert list(scheduler.config.noise_sampler_seed) == [7, 8]


def test_every_call_builds_a_new_scheduler() -> None:
    assert build_scheduler("Euler", SD15_SCHEDULER, [1]) is not build_scheduler("Euler", SD15_SCHEDULER, [1])


def test_lcm_refuses_more_steps_than_its_schedule_has() -> None:
    check_sampler_steps("LCM", 50)
    check_sampler_steps("DDIM", 150)
    with pytest.raises(InvalidRequest, match="the LCM sampler takes at most 50 steps .* got 51; lower the steps"):
        check_sampler_steps("LCM", 51)


def test_unknown_sampler_lists_the_choices() -> None:
    with pytest.raises(InvalidRequest, match="unknown sampler 'Euler b'; choose one of: .*Euler a"):
        build_scheduler("Euler b", SD15_SCHEDULER, [1])
