"""The Lab: the forward process against its closed form, the schedules against the papers and diffusers, x0
predictions against the schedulers' own, filmstrips, the sampler race, and the tab's endpoints."""

import inspect
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, PNDMScheduler
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from studio import lab
from studio.composition import Studio
from studio.errors import Cancelled, InvalidRequest, OutOfMemory
from studio.requests import Txt2ImgRequest
from studio.schedulers import SAMPLER_NAMES, build_scheduler
from studio.ui import create_demo
from studio.ui.jobs import GPU_QUEUE
from studio.validation import Limits

T = 1000
SMALL = {"width": 64, "height": 64}
FAST = {**SMALL, "guidance_scale": 1.0}  # CFG off: one UNet pass per step, for tests that need no guidance


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def paper_alphas_cumprod(schedule: str) -> np.ndarray:
    """abar_t written out from the papers, in float64, independently of diffusers."""
    if schedule == "linear":  # Ho et al. 2020
        betas = np.linspace(1e-4, 0.02, T)
    elif schedule == "scaled_linear":  # Stable Diffusion: linear in sqrt(beta)
        betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), T) ** 2
    else:  # Nichol & Dhariwal 2021: abar(t) = f(t) / f(0), betas capped at 0.999

        def f(t: float) -> float:
            return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])
    return np.cumprod(1 - betas)


def picture() -> Image.Image:
    """A known x0: a gradient with a dark square, 48x40 (multiples of 8, so it is not resized)."""
    ramp = np.tile(np.linspace(0, 255, 48), (40, 1))
    array = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 128)], axis=-1).astype(np.uint8)
    image = Image.fromarray(array)
    ImageDraw.Draw(image).rectangle((10, 10, 25, 25), fill=(20, 20, 20))
    return image


# --- Schedules and the forward process ---------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", lab.SCHEDULE_NAMES)
def test_schedules_match_the_papers_and_diffusers(schedule: str) -> None:
    abar = lab.alphas_cumprod(schedule)
    assert abar.shape == (T,)
    np.testing.assert_allclose(abar, paper_alphas_cumprod(schedule), rtol=2e-5, atol=1e-8)
    settings = lab.SCHEDULES[schedule]
    ours = DDPMScheduler(beta_schedule=schedule, beta_start=settings.beta_start, beta_end=settings.beta_end)
    np.testing.assert_array_equal(abar, ours.alphas_cumprod.double().numpy())
    assert np.all(np.diff(abar) < 0), "noise only ever grows with t"


def test_the_stable_diffusion_schedule_is_the_models_own(tiny_model: Path) -> None:
    model = PNDMScheduler.from_pretrained(tiny_model, subfolder="scheduler")
    np.testing.assert_array_equal(lab.alphas_cumprod("scaled_linear"), model.alphas_cumprod.double().numpy())


@pytest.mark.parametrize("schedule", lab.SCHEDULE_NAMES)
@pytest.mark.parametrize("t", [0, 1, 250, 999])
def test_x_t_is_the_closed_form(schedule: str, t: int) -> None:
    x0 = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    noise = lab.seeded_noise(x0.shape, 5)
    abar = paper_alphas_cumprod(schedule)[t]
    expected = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise
    torch.testing.assert_close(lab.add_noise(x0, noise, t, schedule), expected, rtol=0, atol=2e-5)


def test_add_noise_takes_one_timestep_per_picture() -> None:
    x0 = torch.zeros(3, 3, 4, 4)
    noise = torch.ones(3, 3, 4, 4)
    noisy = lab.add_noise(x0, noise, [0, 500, 999], "linear")
    abar = paper_alphas_cumprod("linear")
    for index, t in enumerate((0, 500, 999)):
        assert noisy[index].mean().item() == pytest.approx(math.sqrt(1 - abar[t]), abs=1e-5)
    with pytest.raises(InvalidRequest, match="3 pictures and 2 timesteps"):
        lab.add_noise(x0, noise, [0, 1], "linear")


def test_forward_process_picture_is_the_closed_form_of_a_known_image() -> None:
    image = picture()
    result = lab.forward_process(lab.ForwardRequest(image=image, schedule="linear", timestep=300, seed=7), Limits())
    assert result.clean.size == (48, 40) and pixels(result.clean).tolist() == pixels(image).tolist()
    x0 = np.asarray(image, dtype=np.float64) / 127.5 - 1
    noise = torch.randn((1, 3, 40, 48), generator=torch.Generator("cpu").manual_seed(7))[0].permute(1, 2, 0).numpy()
    abar = paper_alphas_cumprod("linear")[300]
    expected = np.rint((np.clip(math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise, -1, 1) + 1) * 127.5)
    assert np.abs(pixels(result.noisy) - expected).max() <= 1, "the picture is x_t, clipped for display"
    assert result.point.alpha_bar == pytest.approx(abar, rel=1e-5)
    assert result.point.signal == pytest.approx(math.sqrt(abar), rel=1e-5)
    assert result.point.snr == pytest.approx(abar / (1 - abar), rel=1e-4)


def test_the_noise_seed_reproduces_and_the_example_scene_stands_in() -> None:
    def noisy(seed: int, t: int = 500) -> np.ndarray:
        request = lab.ForwardRequest(image=None, schedule="squaredcos_cap_v2", timestep=t, seed=seed)
        return pixels(lab.forward_process(request, Limits()).noisy)

    assert np.array_equal(noisy(3), noisy(3))
    assert not np.array_equal(noisy(3), noisy(4))
    assert noisy(3).shape == (256, 256, 3), "no picture: the drawn example scene"
    scene = pixels(lab.example_scene())
    assert np.abs(noisy(3, t=0) - scene).mean() < 3, "t = 0 is nearly the clean picture"
    assert np.abs(noisy(3, t=999) - scene).mean() > 40, "t = 999 is nearly pure noise"


def test_big_uploads_are_scaled_down() -> None:
    request = lab.ForwardRequest(image=Image.new("RGB", (2000, 1000), "red"), timestep=10, seed=1)
    result = lab.forward_process(request, Limits())
    width, height = result.noisy.size
    assert width * height <= lab.LAB_MAX_PIXELS and width % 8 == 0 and height % 8 == 0
    assert abs(width / height - 2) < 0.05


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "cosine"}, "unknown noise schedule 'cosine'; choose one of: linear, scaled_linear"),
        ({"timestep": 1000}, "timestep must be between 0 and 999, got 1000"),
        ({"timestep": 12.5}, "timestep must be a whole number"),
        ({"seed": -2}, "seed must be -1 \\(random\\) or between 0 and"),
        ({"image": Image.new("RGB", (4, 4))}, "image is 4x4; it must be at least 8x8"),
    ],
)
def test_forward_process_explains_bad_values(changes: dict[str, object], message: str) -> None:
    request = lab.ForwardRequest(**changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=message):
        lab.forward_process(request, Limits())


def test_plots_and_strip_follow_the_timestep() -> None:
    early, late = lab.draw_schedule_plots("linear", 100), lab.draw_schedule_plots("linear", 900)
    assert early.size == late.size
    assert not np.array_equal(pixels(early), pixels(late)), "the marker moves with t"
    scene = lab.example_scene()
    on_a_column = lab.draw_noise_strip(scene, 0, 500)
    between = lab.draw_noise_strip(scene, 0, 600)
    assert between.width > on_a_column.width, "a t between the strip's columns gets a column of its own"
    assert between.height == on_a_column.height


# --- x0 from a sampler's state -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_scheduler_config(tiny_model: Path) -> dict[str, object]:
    return dict(PNDMScheduler.from_pretrained(tiny_model, subfolder="scheduler").config)


@pytest.mark.parametrize("sampler", ["DDIM", "DDPM", "Euler", "Euler a", "LMS", "Heun"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_formula_agrees_with_pred_original_sample(
    model_scheduler_config: dict[str, object], sampler: str, prediction_type: str
) -> None:
    """Both kinds of sample: DDPM-style (sqrt(abar) x0 + sqrt(1 - abar) eps) and sigma-scaled (x0 + s eps)."""
    config = {**model_scheduler_config, "prediction_type": prediction_type, "clip_sample": False}
    scheduler = build_scheduler(sampler, config, [0])
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 8, 8), generator=generator) * scheduler.init_noise_sigma
    assert lab.keeps_sigma_scaled_latents(scheduler) == (sampler not in ("DDIM", "DDPM"))
    for t in scheduler.timesteps:
        scheduler.scale_model_input(sample, t)  # as the pipeline does; it also finds the step index
        model_output = torch.randn((1, 4, 8, 8), generator=generator)
        level = lab.noise_level(scheduler, t)
        assert level.alpha**2 + level.sigma**2 == pytest.approx(1)
        ours = lab.predicted_x0(model_output, sample, level, prediction_type)
        extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        output = scheduler.step(model_output, t, sample, **extra)
        torch.testing.assert_close(ours, output.pred_original_sample, rtol=1e-4, atol=1e-4)
        sample = output.prev_sample


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "DPM++ 2M Karras", "UniPC"])
def test_x0_formula_agrees_with_the_multistep_solvers(model_scheduler_config: dict[str, object], sampler: str) -> None:
    """These solvers return no pred_original_sample; their own conversion to x0 is what the formula must match."""
    scheduler = build_scheduler(sampler, model_scheduler_config, [0])
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn((1, 4, 8, 8), generator=generator)
    assert not lab.keeps_sigma_scaled_latents(scheduler)
    for t in scheduler.timesteps:
        model_output = torch.randn((1, 4, 8, 8), generator=generator)
        if scheduler.step_index is None:
            scheduler._init_step_index(t)
        theirs = scheduler.convert_model_output(model_output, sample=sample)
        ours = lab.predicted_x0(model_output, sample, lab.noise_level(scheduler, t), "epsilon")
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        sample = scheduler.step(model_output, t, sample).prev_sample


def test_sigma_scaled_samples_are_scaled_back(model_scheduler_config: dict[str, object]) -> None:
    euler = build_scheduler("Euler", model_scheduler_config, [0])
    euler.set_timesteps(4)
    euler.scale_model_input(torch.zeros(1), euler.timesteps[0])
    assert lab.stored_scale(euler) == pytest.approx(float(euler.init_noise_sigma), rel=1e-5)
    ddim = build_scheduler("DDIM", model_scheduler_config, [0])
    ddim.set_timesteps(4)
    assert lab.stored_scale(ddim) == 1.0


# --- The reverse process and the race, on the tiny model ---------------------------------------------------------


def test_filmstrip_frames_and_the_last_frame_is_the_final_image(studio: Studio) -> None:
    progress: list[tuple[int, int]] = []
    request = lab.TrajectoryRequest(
        prompt="a red house", sampler="Euler a", num_inference_steps=5, seed=11, every=2, **SMALL
    )
    result = lab.Lab(studio.manager, studio.service.limits).trajectory(
        request, progress=lambda done, total: progress.append((done, total))
    )
    assert len(result.frames) == lab.frame_count(5, 2) == 3
    assert [frame.step for frame in result.frames] == [2, 4, 5]
    assert [frame.total for frame in result.frames] == [5, 5, 5]
    timesteps = [frame.timestep for frame in result.frames]
    assert timesteps == sorted(timesteps, reverse=True), "from noise towards the picture"
    assert progress == [(i, 5) for i in range(1, 6)]
    last = result.frames[-1]
    assert pixels(last.sample).tolist() == pixels(result.image).tolist()
    for frame in result.frames:
        assert frame.sample.size == frame.prediction.size == (64, 64)
    assert result.filmstrip.width > 3 * 64 and result.filmstrip.height > 2 * 64
    txt2img = studio.service.txt2img(
        Txt2ImgRequest(prompt="a red house", sampler="Euler a", num_inference_steps=5, seed=11, **SMALL)
    )
    assert np.array_equal(pixels(result.image), pixels(txt2img.images[0].image)), "the same picture txt2img makes"


def test_the_lab_reads_a1111_prompt_syntax_as_txt2img_does(studio: Studio) -> None:
    prompt = "a (red:2) house BREAK sea"
    request = lab.TrajectoryRequest(prompt=prompt, sampler="Euler", num_inference_steps=3, seed=4, every=3, **SMALL)
    filmed = lab.Lab(studio.manager, studio.service.limits).trajectory(request)
    made = studio.service.txt2img(
        Txt2ImgRequest(prompt=prompt, sampler="Euler", num_inference_steps=3, seed=4, **SMALL)
    )
    assert np.array_equal(pixels(filmed.image), pixels(made.images[0].image))


def test_second_order_samplers_count_model_calls(studio: Studio) -> None:
    request = lab.TrajectoryRequest(prompt="a tree", sampler="Heun", num_inference_steps=3, seed=2, every=2, **FAST)
    result = lab.Lab(studio.manager, studio.service.limits).trajectory(request)
    assert [frame.step for frame in result.frames] == [2, 4, 5], "Heun: 2 x 3 - 1 model calls"
    assert any("5 model calls for 3 steps" in note for note in result.notes)


def test_every_sampler_films_its_trajectory(studio: Studio) -> None:
    """Each sampler's state is read its own way (sigma-scaled or not, with or without pred_original_sample)."""
    laboratory = lab.Lab(studio.manager, studio.service.limits)
    for sampler in SAMPLER_NAMES:
        request = lab.TrajectoryRequest(prompt="a cat", sampler=sampler, num_inference_steps=2, seed=4, every=1, **FAST)
        result = laboratory.trajectory(request)
        calls = result.frames[-1].total
        assert len(result.frames) == lab.frame_count(calls, 1) == calls >= 2, sampler
        assert pixels(result.frames[-1].sample).tolist() == pixels(result.image).tolist(), sampler
        for frame in result.frames:
            assert pixels(frame.prediction).std() > 0, f"{sampler}: a real picture, not NaN-black"


def test_trajectory_explains_too_many_frames(studio: Studio) -> None:
    request = lab.TrajectoryRequest(prompt="a cat", num_inference_steps=100, every=1, **SMALL)
    with pytest.raises(
        InvalidRequest, match="up to 101 frames; the filmstrip holds at most 40. Set every to at least 3"
    ):
        lab.Lab(studio.manager, studio.service.limits).trajectory(request)
    assert studio.manager.loaded is None, "checked before the model is touched"


def test_stop_interrupts_a_trajectory(studio: Studio) -> None:
    cancel = threading.Event()
    cancel.set()
    request = lab.TrajectoryRequest(prompt="a cat", num_inference_steps=4, every=1, **SMALL)
    with pytest.raises(Cancelled):
        lab.Lab(studio.manager, studio.service.limits).trajectory(request, cancel=cancel)


def test_out_of_memory_frees_and_explains(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    unet = studio.manager.current().pipeline.unet
    freed: list[bool] = []
    original_free = studio.manager.free_memory
    monkeypatch.setattr(studio.manager, "free_memory", lambda: freed.append(True) or original_free())

    def exhausted(*args: object, **kwargs: object) -> object:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    laboratory = lab.Lab(studio.manager, studio.service.limits)
    request = lab.TrajectoryRequest(prompt="a cat", num_inference_steps=2, every=1, seed=1, **FAST)
    unet.forward = exhausted
    try:
        with pytest.raises(OutOfMemory, match="Out of memory on cpu filming a 64x64 generation. The memory was freed"):
            laboratory.trajectory(request)
    finally:
        del unet.forward
    assert freed == [True]
    assert laboratory.trajectory(request).frames, "the next request works"


def test_ddim_is_deterministic_with_eta_0_and_not_with_eta_1(studio: Studio) -> None:
    race = lab.Lab(studio.manager, studio.service.limits)

    def ddim(eta: float) -> lab.RaceEntry:
        request = lab.RaceRequest(
            prompt="a blue sea", samplers=("DDIM",), num_inference_steps=4, seed=21, eta=eta, **FAST
        )
        return race.sampler_race(request).entries[0]

    still = ddim(0.0)
    assert still.deterministic and still.max_difference == 0, "eta 0: the same x_T gives the same picture"
    noisy = ddim(1.0)
    assert not noisy.deterministic and noisy.max_difference is not None and noisy.max_difference > 0
    assert noisy.eta == 1.0
    assert not np.array_equal(pixels(still.image), pixels(noisy.image))


def test_race_times_each_sampler_and_matches_txt2img(studio: Studio) -> None:
    progress: list[tuple[float, str]] = []
    request = lab.RaceRequest(
        prompt="a green tree",
        samplers=("DDPM", "Euler a", "DPM++ 2M Karras"),
        num_inference_steps=3,
        ddpm_steps=5,
        seed=8,
        **FAST,
    )
    result = lab.Lab(studio.manager, studio.service.limits).sampler_race(
        request, progress=lambda fraction, what: progress.append((fraction, what))
    )
    entries = {entry.sampler: entry for entry in result.entries}
    assert [entry.sampler for entry in result.entries] == ["DDPM", "Euler a", "DPM++ 2M Karras"]
    assert (entries["DDPM"].steps, entries["DDPM"].model_calls) == (5, 5)
    assert (entries["Euler a"].steps, entries["Euler a"].model_calls) == (3, 3)
    assert all(entry.seconds > 0 for entry in result.entries)
    assert entries["DDPM"].deterministic is False and entries["Euler a"].deterministic is False
    assert entries["DPM++ 2M Karras"].deterministic is True
    assert result.device == "cpu / float32"
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert "Euler a (fresh step noise)" in {what for _, what in progress}
    txt2img = studio.service.txt2img(
        Txt2ImgRequest(prompt="a green tree", sampler="Euler a", num_inference_steps=3, seed=8, **FAST)
    )
    assert np.array_equal(pixels(entries["Euler a"].image), pixels(txt2img.images[0].image))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"samplers": ()}, "choose one or more samplers to race"),
        ({"samplers": ("DDIM", "Nope")}, "unknown sampler 'Nope'"),
        ({"samplers": ("DDIM", "DDIM")}, "each sampler races once"),
        ({"eta": 1.5}, "eta must be between 0 and 1, got 1.5"),
        ({"width": 100}, "width must be a multiple of 8, got 100; try 104 or 96"),
        (
            {"samplers": SAMPLER_NAMES},
            "12 samplers run twice make 24 images; this studio makes at most 16 per comparison \\(--max-cells\\). "
            "Race fewer samplers, or turn off the rerun.",
        ),
    ],
)
def test_race_explains_bad_values(studio: Studio, changes: dict[str, object], message: str) -> None:
    request = lab.RaceRequest(**{"prompt": "a cat", "width": 64, "height": 64, **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=message):
        lab.Lab(studio.manager, studio.service.limits).sampler_race(request)


def test_latent_forward_process_runs_on_the_gpu_lock(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[str] = []
    original = studio.manager.job

    def recording_job(*args: object, **kwargs: object) -> object:
        jobs.append("job")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(studio.manager, "job", recording_job)
    laboratory = lab.Lab(studio.manager, studio.service.limits)
    early = laboratory.forward_process_latent(lab.ForwardRequest(image=picture(), timestep=0, seed=3))
    late = laboratory.forward_process_latent(lab.ForwardRequest(image=picture(), timestep=999, seed=3))
    assert jobs == ["job", "job"], "the VAE ran inside the manager's job, holding the GPU lock"
    assert early.latent_shape == (4, 20, 24), "the tiny VAE halves each side"
    assert early.round_trip.size == early.noisy.size == (48, 40)
    assert pixels(early.round_trip).tolist() == pixels(late.round_trip).tolist(), "x0 encodes the same at any t"
    distance = [np.abs(pixels(r.noisy) - pixels(r.round_trip)).mean() for r in (early, late)]
    assert distance[0] < distance[1], "more noise at t = 999 than at t = 0"
    assert early.model == "tiny-sd"


# --- The endpoints -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False)


LAB_ENDPOINTS = {
    "/forward_process": (["image", "schedule", "timestep", "seed"], ["Gallery", "Markdown", "Image", "Image"]),
    "/forward_process_latent": (["image", "schedule", "timestep", "seed"], ["Gallery", "Markdown"]),
    "/trajectory": (
        ["prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "width", "height", "seed", "every"],
        ["Gallery", "Image", "Image", "Markdown"],
    ),
    "/sampler_race": (
        [
            "prompt", "negative_prompt", "samplers", "steps", "ddpm_steps", "guidance_scale", "width", "height",
            "seed", "eta", "rerun",
        ],
        ["Gallery", "Dataframe", "Markdown"],
    ),
}  # fmt: skip


def test_lab_endpoints_are_named_and_documented(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    for name, (parameters, returns) in LAB_ENDPOINTS.items():
        endpoint = api["named_endpoints"][name]
        assert [p["parameter_name"] for p in endpoint["parameters"]] == parameters, name
        assert [r["component"] for r in endpoint["returns"]] == returns, name


def test_only_the_pixel_space_forward_process_skips_the_gpu_queue(served_studio: Studio) -> None:
    demo = create_demo(served_studio)
    events = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in {n[1:] for n in LAB_ENDPOINTS}}
    assert set(events) == {"forward_process", "forward_process_latent", "trajectory", "sampler_race"}
    assert events["forward_process"].concurrency_id != GPU_QUEUE
    assert events["forward_process"].concurrency_limit is None
    for name in ("forward_process_latent", "trajectory", "sampler_race"):
        assert events[name].concurrency_id == GPU_QUEUE, name


def test_forward_process_endpoint(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    picture().save(path)
    gallery, values, plots, strip = client.predict(
        image=handle_file(str(path)), schedule="linear", timestep=300, seed=7, api_name="/forward_process"
    )
    direct = lab.forward_process(lab.ForwardRequest(image=picture(), schedule="linear", timestep=300, seed=7), Limits())
    signal, noise = direct.point.signal, direct.point.noise
    assert [item["caption"] for item in gallery] == [
        "x₀, the clean picture", "ε ~ N(0, I), seed 7", f"x_t at t = 300: {signal:.2f}·x₀ + {noise:.2f}·ε",
    ]  # fmt: skip
    with Image.open(gallery[2]["image"]) as served:
        assert pixels(served).tolist() == pixels(direct.noisy).tolist(), "lossless PNG of the same x_t"
    assert "**t = 300**" in values and f"ᾱ_t = {direct.point.alpha_bar:.4g}" in values
    for image_path in (plots, strip):
        with Image.open(image_path) as image:
            assert image.format == "PNG" and image.width > 300


def test_forward_process_endpoint_without_a_picture_and_with_a_bad_seed(client: Client) -> None:
    gallery, *_ = client.predict(image=None, schedule="scaled_linear", timestep=0, seed=1, api_name="/forward_process")
    with Image.open(gallery[0]["image"]) as clean:
        assert clean.size == (256, 256), "the example scene"
    with pytest.raises(AppError, match="seed must be -1 \\(random\\) or between 0 and 4294967295, got 5000000000"):
        client.predict(image=None, schedule="linear", timestep=5, seed=5e9, api_name="/forward_process")


def test_latent_forward_process_endpoint(client: Client) -> None:
    gallery, notes = client.predict(
        image=None, schedule="squaredcos_cap_v2", timestep=400, seed=2, api_name="/forward_process_latent"
    )
    assert len(gallery) == 3
    assert "4x128x128 latents" in notes


def test_trajectory_endpoint(client: Client) -> None:
    frames, filmstrip, final, notes = client.predict(
        prompt="a red house", negative_prompt="", sampler="DDIM", steps=4, guidance_scale=7, width=64, height=64,
        seed=5, every=2, api_name="/trajectory",
    )  # fmt: skip
    assert [item["caption"].split(" · t=")[0] for item in frames] == ["step 2/4", "step 2/4", "step 4/4", "step 4/4"]
    assert frames[-2]["caption"].endswith("· sample") and frames[-1]["caption"].endswith("· predicted x₀")
    with Image.open(frames[-2]["image"]) as last, Image.open(final) as image:
        assert pixels(last).tolist() == pixels(image).tolist(), "the last frame is the final image"
    with Image.open(filmstrip) as strip:
        assert strip.width > 2 * 64
    assert notes.startswith("2 frames of DDIM, 4 steps, seed 5")
    with pytest.raises(AppError, match="every \\(steps between frames\\) must be between 1 and the steps \\(4\\)"):
        client.predict(
            prompt="x", negative_prompt="", sampler="DDIM", steps=4, guidance_scale=7, width=64, height=64, seed=5,
            every=9, api_name="/trajectory",
        )  # fmt: skip


def test_sampler_race_endpoint(client: Client) -> None:
    gallery, table, notes = client.predict(
        prompt="a red house", negative_prompt="", samplers=["DDIM", "DDPM"], steps=3, ddpm_steps=4,
        guidance_scale=7, width=64, height=64, seed=5, eta=0, rerun=True, api_name="/sampler_race",
    )  # fmt: skip
    assert len(gallery) == 4
    assert gallery[1]["caption"] == "DDIM · η=0 again, fresh step noise: same picture"
    rows = {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}
    assert rows["DDIM"]["Steps"] == 3 and rows["DDPM"]["Steps"] == 4
    assert rows["DDIM"]["Same picture from the same x_T"] == "yes, pixel for pixel"
    assert rows["DDPM"]["Same picture from the same x_T"].startswith("no")
    assert float(rows["DDIM"]["Seconds"]) > 0
    assert "Measured on this machine (cpu / float32)" in notes
