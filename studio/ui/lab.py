"""The Lab tab, "see how diffusion works", and its ``/forward_process``, ``/forward_process_latent``,
``/trajectory`` and ``/sampler_race`` endpoints.

The pixel-space forward process is CPU work on a small picture: it answers every move of the timestep slider at
once, outside the GPU queue. Everything that touches the model (the VAE's latent space, generations) waits in the
shared GPU queue like any other generation.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd
from PIL import Image

from studio.lab_requests import (
    DEFAULT_RACE_SAMPLERS,
    DEFAULT_SCHEDULE,
    NUM_TRAIN_TIMESTEPS,
    SCHEDULE_NAMES,
    SCHEDULES,
    STOCHASTIC_NOTE,
    ForwardRequest,
    RaceProgress,
    RaceRequest,
    TrajectoryRequest,
)
from studio.schedulers import SAMPLER_NAMES
from studio.startup import loaded_studio
from studio.ui.controls import build_generation_controls, prompt_placeholder, wire_reuse_last_seed
from studio.ui.errors import user_errors
from studio.ui.jobs import GPU_QUEUE, owner_of, progress_reporter, wire_stop
from studio.ui.results import build_send_buttons, selected_index
from studio.ui.tabs import SendSource
from studio.ui.uploads import CheckedImage
from studio.ui.zerogpu import gpu, race_seconds, trajectory_seconds, vae_seconds

if TYPE_CHECKING:  # the tab is built before torch loads; these come with it (studio/startup.py)
    from studio.composition import Studio
    from studio.lab import ForwardResult, Lab, LatentForwardResult, RaceResult, SchedulePoint, Trajectory

INTRO = """\
## Lab: see how diffusion works
A diffusion model learns to undo noise. **Training** takes a clean picture x₀ and jumps straight to any noise level
t with x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε; **generating** starts from pure noise and removes it a little at a time.
Everything here is computed by 🤗 diffusers' own schedulers and the model this studio serves."""

FORWARD_HELP = """\
### 1 · The forward process: adding noise
Move **t** and watch the picture drown (upload your own picture, or leave it empty for a drawn scene). The
*noise schedule* decides how fast: ᾱ_t is the share of the picture's variance left at t. Stable Diffusion's *scaled
linear* schedule keeps more of the picture than DDPM's *linear* one through the middle and the end, and never quite
reaches pure noise (ᾱ_999 ≈ 0.005); the *cosine* schedule lets ᾱ_t fall more evenly over t and ends at almost
exactly pure noise."""

REVERSE_HELP = """\
### 2 · The reverse process: denoising, step by step
A generation with a frame every *k* model calls (one per step for most samplers): top, the sample the sampler holds
(x_t, shown as a noisy picture); below, the model's guess of the finished picture x₀ at that moment. The coarse
layout is settled early, the details late. The last frame is the final image."""

RACE_HELP = """\
### 3 · Samplers side by side
The same prompt, seed and starting noise x_T through each sampler, timed on this machine. **Run again from the same
x_T** repeats each one with other noise *during* sampling: DDIM with η = 0, Euler and DPM++ 2M are deterministic
maps from x_T to a picture and give it again; DDPM, Euler a, DDIM with η > 0 and the SDE sampler add fresh noise at
every step and do not."""

RACE_COLUMNS = ["Sampler", "Steps", "Model calls", "Seconds", "ms per call", "η", "Same picture from the same x_T"]
FIRST_TIMESTEP = 250
FIRST_NOISE_SEED = 0
"""Where the forward process explorer starts (and what an API call that leaves them out gets)."""
TRAJECTORY_OUTPUTS = 5
RACE_OUTPUTS = 5


def describe_point(point: SchedulePoint, seed: int) -> str:
    """The numbers of x_t at the slider, in words."""
    if point.snr > 1.5:
        balance = "the picture outweighs the noise"
    elif point.snr > 1 / 1.5:
        balance = "the picture and the noise weigh about the same"
    else:
        balance = "the noise outweighs the picture"
    return (
        f"**t = {point.timestep}** of {NUM_TRAIN_TIMESTEPS}, {SCHEDULES[point.schedule].label} schedule: "
        f"ᾱ_t = {point.alpha_bar:.4g}, so x_t = **{point.signal:.3f}** · x₀ + **{point.noise:.3f}** · ε. "
        f"SNR = ᾱ_t / (1 − ᾱ_t) = {point.snr:.3g}: {balance}. Noise seed {seed}."
    )


def present_forward(result: ForwardResult) -> tuple[Any, ...]:
    point = result.point
    gallery = [
        (result.clean, "x₀, the clean picture"),
        (result.noise, f"ε ~ N(0, I), seed {result.request.seed}"),
        (result.noisy, f"x_t at t = {point.timestep}: {point.signal:.2f}·x₀ + {point.noise:.2f}·ε"),
    ]
    notes = "".join(f"\n\n{note}" for note in result.notes)
    return gallery, describe_point(point, result.request.seed) + notes, result.plots, result.strip


def present_latent(result: LatentForwardResult) -> tuple[Any, ...]:
    point = result.point
    channels, height, width = result.latent_shape
    gallery = [
        (result.round_trip, "x₀ through the VAE and back: what the latents hold"),
        (result.noisy, f"x_t at t = {point.timestep} in latent space, decoded"),
        (result.channels, f"the noisy latents: {channels} channels of {width}x{height}, as the UNet sees them"),
    ]
    image = result.request.image
    patch = image.width // width if image is not None else 8
    notes = [
        f"Compare with x_t in pixels above: here ε is added to {result.model}'s {channels}x{width}x{height} "
        f"latents, where each value stands for a {patch}x{patch} patch of pixels, so the noise disturbs whole "
        "patches rather than speckling single pixels.",
        *(f"⚠️ {note}" for note in result.notes),
    ]
    return gallery, "\n\n".join(notes)


def present_trajectory(result: Trajectory) -> tuple[Any, ...]:
    frames = []
    for frame in result.frames:
        frames.append((frame.sample, f"{frame.label()} · sample"))
        frames.append((frame.prediction, f"{frame.label()} · predicted x₀"))
    summary = (
        f"{len(result.frames)} frames of {result.request.sampler}, {result.request.num_inference_steps} steps, "
        f"seed {result.request.seed}, {result.seconds:.2f} s on {result.model}. The last frame is the final image."
    )
    notes = "\n\n".join([summary, *(f"⚠️ {note}" for note in result.notes)])
    return frames, result.filmstrip, result.image, notes, result.request.seed


def _same(entry_max_difference: int | None) -> str:
    if entry_max_difference is None:
        return "not run again"
    if entry_max_difference == 0:
        return "yes, pixel for pixel"
    return f"no (pixels differ by up to {entry_max_difference}/255)"


def present_race(result: RaceResult) -> tuple[Any, ...]:
    gallery: list[tuple[Image.Image, str]] = []
    rows = []
    for entry in result.entries:
        eta = f" · η={entry.eta:g}" if entry.eta is not None else ""
        gallery.append((entry.image, f"{entry.sampler}{eta} · {entry.steps} steps · {entry.seconds:.2f} s"))
        if entry.rerun_image is not None:
            verdict = "same picture" if entry.deterministic else "another picture"
            gallery.append((entry.rerun_image, f"{entry.sampler}{eta} again, {STOCHASTIC_NOTE}: {verdict}"))
        rows.append(
            [
                entry.sampler,
                entry.steps,
                entry.model_calls,
                round(entry.seconds, 3),
                round(1000 * entry.seconds / max(1, entry.model_calls), 1),
                "" if entry.eta is None else f"{entry.eta:g}",
                _same(entry.max_difference),
            ]
        )
    request = result.request
    timing = "the faster of its two runs" if request.rerun else "one run"
    notes = [
        f"Measured on this machine ({result.device}), {request.width}x{request.height}, seed {request.seed}, "
        f"{result.model}. Each time is {timing}, from the pipeline call to the decoded picture; the first "
        "generation after the model loads also pays for warming up."
    ]
    notes.extend(f"⚠️ {note}" for note in result.notes)
    return gallery, pd.DataFrame(rows, columns=RACE_COLUMNS), "\n\n".join(notes), request.seed, 0


def progress_of_race(progress: gr.Progress) -> RaceProgress:
    def report(fraction: float, running: str) -> None:
        progress(fraction, desc=running)

    return report


def build_lab_tab(studio: Studio) -> list[SendSource]:
    """The Lab: the forward process explorer, the reverse-process filmstrip and the sampler race. Returns the
    pictures "Send to" carries into other tabs: the reverse process's final image and the race's images."""

    @functools.cache
    def lab() -> Lab:
        """The Lab's engine, made on first use: it brings torch in, which loads behind the page."""
        from studio.lab import Lab

        return Lab(studio.manager, studio.service.limits, studio.service.loras)

    settings = studio.settings
    ready = loaded_studio(studio)  # None while the libraries load: the model is not loaded then either
    model_loaded = ready is not None and ready.manager.loaded is not None
    with gr.Tab("Lab", id="lab") as tab:
        gr.Markdown(INTRO)
        gr.Markdown(FORWARD_HELP)
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                image = CheckedImage(
                    max_megapixels=settings.max_upload_megapixels,
                    value=None,  # the drawn scene stands in (a default here would be a server path in the API docs)
                    label="Picture x₀",
                    type="pil",
                    image_mode="RGB",
                    sources=["upload", "clipboard"],
                    height=256,
                    elem_id="lab-image",
                )
                schedule = gr.Radio(
                    [(SCHEDULES[name].label, name) for name in SCHEDULE_NAMES],
                    value=DEFAULT_SCHEDULE,
                    label="Noise schedule",
                    elem_id="lab-schedule",
                )
                timestep = gr.Slider(
                    0, NUM_TRAIN_TIMESTEPS - 1, value=FIRST_TIMESTEP, step=1, label="Timestep t", elem_id="lab-timestep"
                )
                noise_seed = gr.Number(
                    value=FIRST_NOISE_SEED, precision=0, label="Noise seed (-1 = random)", elem_id="lab-noise-seed"
                )
                in_latent_space = gr.Checkbox(
                    value=model_loaded,
                    label="Also in the model's latent space (loads the model)",
                    elem_id="lab-latent",
                )
            with gr.Column(scale=5):
                equation = gr.Gallery(
                    label="x₀, ε and x_t",
                    format="png",
                    columns=3,
                    height="auto",
                    object_fit="contain",
                    interactive=False,
                    elem_id="lab-forward",
                )
                values = gr.Markdown(elem_id="lab-values")
                with gr.Column(visible=model_loaded) as latent_panel:
                    latent_gallery = gr.Gallery(
                        label="In the model's latent space",
                        format="png",
                        columns=3,
                        height="auto",
                        object_fit="contain",
                        interactive=False,
                        elem_id="lab-latent-gallery",
                    )
                    latent_notes = gr.Markdown(elem_id="lab-latent-notes")
        plots = gr.Image(
            label="The three schedules over t (the dashed line is the slider)",
            show_label=False,  # the label would cover the legend; the figure explains itself
            type="pil",
            format="png",
            interactive=False,
            elem_id="lab-plots",
        )
        strip = gr.Image(
            label="x_t at several t, the same ε for every schedule",
            type="pil",
            format="png",
            interactive=False,
            elem_id="lab-strip",
        )

        gr.Markdown(REVERSE_HELP)
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                prompt = gr.Textbox(
                    label="Prompt",
                    lines=2,
                    placeholder=prompt_placeholder(studio, "lab"),
                    elem_id="lab-prompt",
                )
                negative = gr.Textbox("", label="Negative prompt", lines=1, elem_id="lab-negative-prompt")
            with gr.Column(scale=1, min_width=180):
                run = gr.Button("Run the reverse process", variant="primary", elem_id="lab-trajectory-run")
                stop = gr.Button("Stop", variant="stop", elem_id="lab-trajectory-stop")
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                controls = build_generation_controls(
                    "lab",
                    studio,
                    with_batch=False,
                    with_clip_skip=False,
                    with_variation=False,
                    with_tiling=False,
                    with_scheduler=False,
                )
                every = gr.Slider(
                    1, settings.max_steps, value=5, step=1, label="A frame every k model calls", elem_id="lab-every"
                )
            with gr.Column(scale=5):
                filmstrip = gr.Image(
                    label="Filmstrip: the sample (top) and the predicted x₀ (below)",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="lab-filmstrip",
                )
                with gr.Row():
                    final = gr.Image(
                        label="Final image",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=256,
                        elem_id="lab-final",
                        scale=1,
                    )
                    trajectory_notes = gr.Markdown(elem_id="lab-trajectory-notes")
                final_sends = build_send_buttons("lab-final")
                with gr.Accordion("Every frame at full size", open=False):
                    frames = gr.Gallery(
                        label="Frames", format="png", columns=4, height="auto", interactive=False, elem_id="lab-frames"
                    )

        gr.Markdown(RACE_HELP)
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                samplers = gr.CheckboxGroup(
                    list(SAMPLER_NAMES), value=list(DEFAULT_RACE_SAMPLERS), label="Samplers", elem_id="lab-samplers"
                )
                ddpm_steps = gr.Slider(
                    1,
                    settings.max_steps,
                    value=min(50, settings.max_steps),
                    step=1,
                    label="DDPM's steps (the others use Steps above)",
                    elem_id="lab-ddpm-steps",
                )
                eta = gr.Slider(0, 1, value=0, step=0.05, label="DDIM's η (0: deterministic)", elem_id="lab-eta")
                rerun = gr.Checkbox(
                    value=True, label="Run each again from the same x_T with fresh step noise", elem_id="lab-rerun"
                )
                with gr.Row():
                    race = gr.Button("Race", variant="primary", elem_id="lab-race-run")
                    race_stop = gr.Button("Stop", variant="stop", elem_id="lab-race-stop")
            with gr.Column(scale=5):
                race_gallery = gr.Gallery(
                    label="Final images (each sampler, then its rerun)",
                    format="png",
                    columns=4,
                    height="auto",
                    interactive=False,
                    elem_id="lab-race-gallery",
                )
                race_sends = build_send_buttons("lab-race")
                race_table = gr.Dataframe(
                    headers=RACE_COLUMNS, interactive=False, label="Steps and wall time", elem_id="lab-race-table"
                )
                race_notes = gr.Markdown(elem_id="lab-race-notes")
        last_seed = gr.State(None)
        race_selected = gr.State(0)
        only_one = gr.State(0)
        offered_latents = gr.State(False)
        latent_ticket = gr.State(0)
    assert controls.width is not None and controls.height is not None

    @user_errors(outputs=4)
    def forward_process(
        image: Image.Image | None = None,
        schedule: str = DEFAULT_SCHEDULE,
        timestep: float = FIRST_TIMESTEP,
        seed: float = FIRST_NOISE_SEED,
    ) -> tuple[Any, ...]:
        """Add noise to a picture in one jump, as training does: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
        (pixel space, CPU only, outside the GPU queue).

        Args:
            image: the clean picture x_0; none for the built-in example scene. Scaled to at most 512x512.
            schedule: the noise schedule: "linear" (DDPM), "scaled_linear" (Stable Diffusion) or
                "squaredcos_cap_v2" (cosine).
            timestep: t, 0-999.
            seed: the seed of the noise eps (-1 for random); the same seed gives the same noise.
        Returns:
            A gallery of x_0, eps and x_t; the schedule's numbers at t; the plots of the three schedules with t
            marked; and the strip of x_t at several t for every schedule.
        """
        job = ForwardRequest(image=image, schedule=schedule, timestep=timestep, seed=seed)  # type: ignore[arg-type]
        return present_forward(lab().forward_process(job))

    gr.on(
        triggers=[tab.select, image.change, schedule.change, timestep.change, noise_seed.change],
        fn=forward_process,
        inputs=[image, schedule, timestep, noise_seed],
        outputs=[equation, values, plots, strip],
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="forward_process",
        concurrency_limit=None,
    )

    @gpu(vae_seconds)
    @user_errors(outputs=2)
    def forward_process_latent(
        image: Image.Image | None = None,
        schedule: str = DEFAULT_SCHEDULE,
        timestep: float = FIRST_TIMESTEP,
        seed: float = FIRST_NOISE_SEED,
    ) -> tuple[Any, ...]:
        """The forward process in the model's latent space: encode x_0 with the VAE, add noise to the latents,
        decode. Loads the model on first use.

        Args:
            image: the clean picture x_0; none for the built-in example scene. Scaled to at most 512x512.
            schedule: "linear", "scaled_linear" or "squaredcos_cap_v2".
            timestep: t, 0-999.
            seed: the seed of the noise eps (-1 for random).
        Returns:
            A gallery of the VAE's round trip of x_0, the noisy latents decoded, and the noisy latents' channels;
            and notes.
        """
        job = ForwardRequest(image=image, schedule=schedule, timestep=timestep, seed=seed)  # type: ignore[arg-type]
        return present_latent(lab().forward_process_latent(job))

    def ask_for_latents(shown: bool, asked: int) -> Any:
        """A new ticket when the latent view is on. The latent event follows the ticket, so with the checkbox off
        nothing waits in the GPU queue, and the endpoint's parameters are the picture's alone."""
        return asked + 1 if shown else gr.skip()

    gr.on(
        triggers=[image.change, schedule.change, timestep.change, noise_seed.change, in_latent_space.change],
        fn=ask_for_latents,
        inputs=[in_latent_space, latent_ticket],
        outputs=latent_ticket,
        trigger_mode="always_last",
        show_progress="hidden",
        concurrency_limit=None,  # queued (a State's change event only follows queued events), but never waits
        api_visibility="private",
    )
    latent_ticket.change(
        forward_process_latent,
        inputs=[image, schedule, timestep, noise_seed],
        outputs=[latent_gallery, latent_notes],
        trigger_mode="always_last",
        api_name="forward_process_latent",
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    in_latent_space.change(
        lambda shown: gr.Column(visible=shown),
        inputs=in_latent_space,
        outputs=latent_panel,
        queue=False,
        api_visibility="private",
    )

    def offer_latents(shown: bool, offered: bool) -> tuple[Any, bool]:
        """Once a model is loaded, the first visit to the tab shows its latent space too (it costs nothing more)."""
        if offered or shown or studio.manager.loaded is None:
            return gr.skip(), offered
        return True, True

    tab.select(
        offer_latents,
        inputs=[in_latent_space, offered_latents],
        outputs=[in_latent_space, offered_latents],
        queue=False,
        api_visibility="private",
    )

    wire_reuse_last_seed(controls, last_seed)

    @gpu(trajectory_seconds)
    @user_errors(outputs=TRAJECTORY_OUTPUTS)
    def trajectory(
        prompt: str,
        negative_prompt: str,
        sampler: str,
        steps: float,
        guidance_scale: float,
        width: float,
        height: float,
        seed: float,
        every: float,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> tuple[Any, ...]:
        """Generate from a prompt and film the reverse process: every k steps, the current sample and the model's
        prediction of the clean image x_0.

        Args:
            prompt: what to draw.
            negative_prompt: what to avoid ("" for nothing).
            sampler: an A1111 sampler name, e.g. "Euler", "DDIM", "DPM++ 2M Karras".
            steps: denoising steps.
            guidance_scale: classifier-free guidance (CFG) scale.
            width: image width, a multiple of 8.
            height: image height, a multiple of 8.
            seed: -1 for random; the same seed gives the picture txt2img makes.
            every: k, a frame after every k model calls (and after the last).
        Returns:
            The frames (sample, then predicted x_0, captioned with step and timestep); the filmstrip image; the
            final image (equal to the last frame); and notes.
        """
        job = TrajectoryRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,  # type: ignore[arg-type]  # whole floats are accepted by the checks
            guidance_scale=guidance_scale,
            width=width,  # type: ignore[arg-type]
            height=height,  # type: ignore[arg-type]
            seed=seed,  # type: ignore[arg-type]
            every=every,  # type: ignore[arg-type]
        )
        with studio.cancels.job(owner_of(request)) as cancel:
            result = lab().trajectory(job, progress=progress_reporter(progress), cancel=cancel)
        return present_trajectory(result)

    trajectory_event = gr.on(
        triggers=[run.click],
        fn=trajectory,
        inputs=[
            prompt,
            negative,
            *controls.sampling_inputs(),
            every,
        ],
        outputs=[frames, filmstrip, final, trajectory_notes, last_seed],
        api_name="trajectory",
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    wire_stop(stop, trajectory_event, trajectory_notes, studio)

    @gpu(race_seconds)
    @user_errors(outputs=RACE_OUTPUTS)
    def sampler_race(
        prompt: str,
        negative_prompt: str,
        samplers: list[str],
        steps: float,
        ddpm_steps: float,
        guidance_scale: float,
        width: float,
        height: float,
        seed: float,
        eta: float,
        rerun: bool,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds the progress tracker by this default
    ) -> tuple[Any, ...]:
        """Race samplers on the same prompt, seed and starting noise x_T: steps, wall time on this machine, and
        the final images side by side.

        Args:
            prompt: what to draw.
            negative_prompt: what to avoid ("" for nothing).
            samplers: the A1111 sampler names to race, e.g. ["DDPM", "DDIM", "Euler a"].
            steps: denoising steps of every sampler but DDPM.
            ddpm_steps: DDPM's denoising steps (it was made for many).
            guidance_scale: classifier-free guidance (CFG) scale.
            width: image width, a multiple of 8.
            height: image height, a multiple of 8.
            seed: -1 for random; the seed of x_T (and of the first run's step noise), shared by every sampler.
            eta: DDIM's eta, 0-1: 0 is deterministic, 1 adds as much fresh noise per step as DDPM.
            rerun: run each sampler again from the same x_T with other step noise, to see which are deterministic.
        Returns:
            The final images (each sampler, then its rerun); a table of steps, model calls, seconds and whether the
            rerun gave the same picture; and notes.
        """
        job = RaceRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            samplers=tuple(samplers or ()),
            num_inference_steps=steps,  # type: ignore[arg-type]
            ddpm_steps=ddpm_steps,  # type: ignore[arg-type]
            guidance_scale=guidance_scale,
            width=width,  # type: ignore[arg-type]
            height=height,  # type: ignore[arg-type]
            seed=seed,  # type: ignore[arg-type]
            eta=eta,
            rerun=rerun,
        )
        with studio.cancels.job(owner_of(request)) as cancel:
            result = lab().sampler_race(job, progress=progress_of_race(progress), cancel=cancel)
        return present_race(result)

    race_event = gr.on(
        triggers=[race.click],
        fn=sampler_race,
        inputs=[
            prompt,
            negative,
            samplers,
            controls.steps,
            ddpm_steps,
            controls.guidance_scale,
            controls.width,
            controls.height,
            controls.seed,
            eta,
            rerun,
        ],
        outputs=[race_gallery, race_table, race_notes, last_seed, race_selected],
        api_name="sampler_race",
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    wire_stop(race_stop, race_event, race_notes, studio)
    race_gallery.select(selected_index, outputs=race_selected, queue=False, api_visibility="private")
    return [
        SendSource(final, only_one, prompt, negative, final_sends),
        SendSource(race_gallery, race_selected, prompt, negative, race_sends),
    ]
