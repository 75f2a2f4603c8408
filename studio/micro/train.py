"""Train the micro model from scratch: ``python -m studio.micro.train --out DIR``.

The defaults are the one-hour recipe: under an hour of wall clock on an idle 2-core CPU, with two torch threads
(the committed weights are its output with seed 0 from before the caption probe, i.e. with
``--caption-probe-weight 0``; the model card has the runs and the figures). Four stages, each on scenes drawn on
the fly (a fresh, seeded scene for every sample: no fixed data set), three in four of them with two shapes
(where the model goes wrong: small shapes, two colours to bind):

1. The VAE, first and until its reconstructions keep the shapes: L1 + MSE reconstruction and a small KL term.
   Every so often the detector reads reconstructions of held-out scenes; the stage ends when it finds the
   colours and shapes it finds in the originals (or its share of the time is spent). A diffusion model cannot
   draw sharper shapes than its VAE decodes, so this stage decides the shape accuracy of everything after.
   How soon a VAE leaves its first plateau depends mostly on its random initialisation, so one that still gets
   most colours wrong at step 500 starts again from another (at most twice).
2. The UNet and the text encoder together, with the seed guide's objective: x_t = sqrt(abar_t) x_0 +
   sqrt(1 - abar_t) eps from DDPMScheduler's forward process on the VAE latents, the UNet predicts eps, MSE.
   Each sample's squared error is weighted by min(SNR_t, 5) / SNR_t (Min-SNR-5, diffusers' ``--snr_gamma``):
   the nearly clean timesteps, where the error is only fine detail, stop taking most of the updates, which in
   a short run go to the noisy timesteps that decide where the shapes are and what they are.
   The caption is dropped (replaced by "") one time in ten, so classifier-free guidance has an unconditional
   model to push away from. A caption probe, thrown away afterwards, reads each caption's background colour and
   shapes back from the text encoder's end-of-text and padding positions (``CaptionProbe``): it makes every
   run's text encoder put the caption's last word, the background colour, where the UNet finds it. The weights
   kept are an exponential moving average. The text encoder and UNet are
   ``torch.compile``d for this stage (``--no-compile`` to not): 1.3x the steps in the same time on the CPU.
3. A Canny ControlNet copied from the UNet's encoder, trained on cv2.Canny edges of the same scenes while the
   UNet and text encoder stay frozen.
4. The VAE decoder alone, its encoder frozen, with an edge term added: the latents the UNet learned stay exactly
   as they were while the decoder learns to draw sharper shapes from them. It comes last because nothing
   depends on it, so it takes whatever time the others leave, and it keeps the best decoder its checks saw.

``--refine-decoder``, ``--continue-unet`` and ``--train-controlnet`` run one stage on a saved model.

The result is a standard StableDiffusionPipeline folder (model_index.json, one subfolder per module,
safetensors) with the ControlNet in ``controlnet/``, every module in float32: the model is small either way (about
9 MB), and float32 weights load as any SD model's do, ``from_pretrained`` with no dtype included. The folder is
saved during training too, so a run that is stopped early still leaves a usable model.
Losses go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.training_utils import EMAModel, compute_snr
from torch.nn.functional import cross_entropy, l1_loss, mse_loss
from transformers import CLIPTextModel, CLIPTokenizer

from studio.devices import resolve_placement
from studio.micro.detect import detect, edge_map
from studio.micro.location import CONTROLNET_SUBFOLDER
from studio.micro.model import (
    MAX_TOKENS,
    build_controlnet,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    write_tokenizer,
)
from studio.micro.scenes import COLOURS, SHAPES, Scene, scene_for_seed, to_array
from studio.settings import SettingsError

EVAL_SEED_BASE = 2_000_000_000
"""Held-out scenes (for the VAE's check and the evaluation) start here; training seeds stay far below."""
INITIAL_LOGVAR_SHIFT = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """How long and how hard to train; the defaults are the one-hour recipe (see the module docstring)."""

    out: Path
    minutes: float = 115.0
    """Compute budget of the whole run in CPU minutes of this process (two threads on an idle 2-core machine use
    about two CPU minutes per minute)."""
    max_wall_minutes: float = 58.5
    """Wall-clock bound of the whole run: every stage ends by its share of this too."""
    seed: int = 0
    vae_share: float = 0.16
    """The most of the whole budget the VAE may take (it stops earlier once its reconstructions pass)."""
    controlnet_share: float = 0.1
    """The ControlNet's share of the whole budget."""
    decoder_share: float = 0.15
    """The decoder refinement's share of the whole budget (it gets whatever the others leave, at least this);
    the UNet gets the rest."""
    vae_batch: int = 16
    unet_batch: int = 32
    unet_noise_draws: int = 2
    """Each scene of a UNet batch is noised this many times (other t and eps): encoding it is a quarter of a step,
    and with 16 fresh scenes a step the UNet still sees 90,000 different scenes in an hour."""
    controlnet_batch: int = 32
    vae_lr: float = 1e-3
    decoder_lr: float = 5e-4
    unet_lr: float = 8e-4
    controlnet_lr: float = 5e-4
    caption_dropout: float = 0.1
    controlnet_caption_dropout: float = 0.25
    caption_probe_weight: float = 0.05
    """Weight of the caption probe's loss beside the denoising loss in the UNet stage (0: no probe; see
    ``CaptionProbe``)."""
    snr_gamma: float | None = 5.0
    """Min-SNR weighting of the denoising loss, min(SNR_t, gamma) / SNR_t per sample (None: plain MSE)."""
    two_shape_share: float | None = 0.75
    """The share of training scenes with two shapes (None: half, as each scene's seed decides)."""
    kl_weight: float = 1e-6
    vae_pass_shape_accuracy: float = 0.97
    """The VAE stage ends when the detector finds this share of held-out shapes in reconstructions."""
    vae_check_every: int = 100
    vae_check_scenes: int = 96
    vae_min_steps: int = 300
    vae_restart_step: int = 500
    vae_restart_colour: float = 0.5
    """A VAE whose reconstructions get fewer than this share of the colours right by ``vae_restart_step`` (a check
    step) starts again from another random initialisation. Measured on 2026-11-29 with the VAE's earlier eight
    normalisation groups: at step 500 of the VAE stage, four starts had 32%, 53%, 66% and 95% of the colours right;
    the one at 32% still had only 75% of the colours and 37% of the shapes 950 steps later. With two groups (see
    ``build_vae``) three starts had 98-100% there, so the restart is now a guard that has not yet fired. A restart
    costs 500 steps, about 2.5 minutes; the stage's share leaves time for them."""
    vae_max_restarts: int = 2
    save_every_s: float = 240.0
    log_every: int = 25
    device: str = "auto"
    """Where to train: ``auto`` takes a CUDA or Apple GPU when there is one, else the CPU; always in float32.
    (Not yet run on a GPU: no GPU was at hand when it was written; the smoke test runs it on the CPU.)"""
    compile: bool = True
    """``torch.compile`` the UNet and text encoder for their stage: on the 2-core CPU a batch-32 step took 0.20 s
    instead of 0.26 s (measured alone), and the first step compiles (58 s in a run, 9 s with inductor's cache
    warm); runs 3 and 4 of the model card got 8697 and 7108 UNet steps where run 2 had 5663. Left off on Apple
    GPUs (poorly supported there) and without a C/C++ compiler (see ``compile_unavailable``); the log says so."""
    threads: int = 2
    """Two threads: 1.5x faster than one on an idle 2-core machine. On a machine busy with other work use one:
    two OpenMP threads then wait on each other whenever either is preempted (measured 10-20x slower)."""
    max_steps: int | None = None
    """A cap on each stage's steps (the smoke run sets a few)."""
    refine_decoder: bool = False
    """Only train the decoder of the model already saved in ``out`` (see ``refine_decoder``)."""
    continue_unet: bool = False
    """Only train on the UNet (and text encoder) of the model already saved in ``out`` (see ``continue_unet``)."""
    train_controlnet: bool = False
    """Only train a fresh ControlNet for the model already saved in ``out`` (see ``retrain_controlnet``)."""

    def __post_init__(self) -> None:
        if self.vae_restart_step % self.vae_check_every:
            raise ValueError(
                f"vae_restart_step ({self.vae_restart_step}) must be a multiple of vae_check_every "
                f"({self.vae_check_every}): a restart is judged on the VAE's check at that step"
            )

    @property
    def budget_s(self) -> float:
        return self.minutes * 60.0

    @property
    def wall_per_cpu(self) -> float:
        return self.max_wall_minutes / self.minutes


@dataclass
class Record:
    """What a run did, written to ``training.json`` beside the weights (the model card quotes it)."""

    config: dict[str, object]
    stages: dict[str, dict[str, object]] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    stored_dtypes: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    torch_threads: int = 0
    device: str = "cpu"


def log(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class SceneStream:
    """Fresh scenes in seed order from ``first_seed``: every sample of a run is new, and every run the same.

    ``two_shape_share`` of them have two shapes (the rest one); None leaves it to each scene's seed (half and
    half). Two-shape scenes are where the model goes wrong (small shapes, two colours to bind), so training can
    show them more often than the evaluation does.
    """

    def __init__(self, first_seed: int, two_shape_share: float | None = None) -> None:
        self.next_seed = first_seed
        self.two_shape_share = two_shape_share
        self.counts = random.Random(first_seed)

    def _shape_count(self) -> int | None:
        if self.two_shape_share is None:
            return None
        return 2 if self.counts.random() < self.two_shape_share else 1

    def take(self, count: int) -> list[Scene]:
        scenes = [scene_for_seed(self.next_seed + i, self._shape_count()) for i in range(count)]
        self.next_seed += count
        return scenes


def pixels(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> torch.Tensor:
    """Scenes as a (n, 3, 64, 64) tensor in [-1, 1] on ``device``, as the VAE takes them."""
    array = np.stack([to_array(scene.image) for scene in scenes]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)


def edges(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> torch.Tensor:
    """Canny edge maps as (n, 3, 64, 64) in [0, 1] on ``device``: what the ControlNet pipeline feeds a ControlNet."""
    maps = np.stack([edge_map(scene.image) for scene in scenes]).astype(np.float32)
    return torch.from_numpy(maps)[:, None].repeat(1, 3, 1, 1).to(device)


def to_images(batch: torch.Tensor) -> list[np.ndarray]:
    array = ((batch.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(array)


def edge_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences: per-pixel losses barely punish a soft edge,
    this does, and a soft edge is what turns a square into a circle for the detector (and for the eye)."""

    def differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]

    (rx, ry), (tx, ty) = differences(reconstruction), differences(target)
    return l1_loss(rx, tx) + l1_loss(ry, ty)


def descend(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    lr: float,
    parameters: list[torch.nn.Parameter] | None = None,
    ema: EMAModel | None = None,
) -> None:
    """One optimiser step at ``lr``, the same in every stage; the denoisers (given their ``parameters`` and
    ``ema``) also clip gradients to norm 1 and update their moving average."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if parameters is not None:
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    if ema is not None and parameters is not None:
        ema.step(parameters)


def learning_rate(base: float, step: int, fraction: float, warmup: int = 100) -> float:
    """Linear warm-up, then a cosine from ``base`` down to a tenth of it as the stage's time runs out."""
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def shape_agreement(scenes: Sequence[Scene], images: Iterable[np.ndarray]) -> tuple[float, float]:
    """(colour accuracy, shape accuracy) of the detector on ``images`` against the scenes they came from."""
    colours = shapes = total = 0
    for scene, image in zip(scenes, images, strict=True):
        found = detect(image)
        for shape in scene.shapes:
            total += 1
            match = [blob for blob in found.blobs if blob.colour == shape.colour]
            colours += bool(match) and found.background == scene.background
            shapes += bool(match) and match[0].shape == shape.kind
    return colours / total, shapes / total


def _ranks_above(check: dict[str, float], other: dict[str, float]) -> bool:
    """Whether a VAE check is better than another: more shapes right, then more colours."""
    return (check["shape"], check["colour"]) > (other["shape"], other["colour"])


class Stage:
    """A timed training loop: steps until its compute time (or wall time, or the step cap) is spent.

    Time is counted as this process's CPU time, not wall time: on a machine shared with other work the run takes
    longer but trains as much as it would alone, so the model does not depend on what else was running. A wall
    limit still bounds it.
    """

    def __init__(self, name: str, cpu_seconds: float, wall_seconds: float, max_steps: int | None) -> None:
        self.name, self.cpu_seconds, self.wall_seconds, self.max_steps = name, cpu_seconds, wall_seconds, max_steps
        self.started = time.monotonic()
        self.started_cpu = time.process_time()
        self.step = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def elapsed_cpu(self) -> float:
        return time.process_time() - self.started_cpu

    @property
    def fraction(self) -> float:
        by_cpu = self.elapsed_cpu / self.cpu_seconds if self.cpu_seconds > 0 else 1.0
        by_wall = self.elapsed / self.wall_seconds if self.wall_seconds > 0 else 1.0
        by_steps = self.step / self.max_steps if self.max_steps else 0.0
        return max(by_cpu, by_wall, by_steps)

    def running(self) -> bool:
        return self.fraction < 1.0

    def summary(self) -> dict[str, object]:
        return {"steps": self.step, "seconds": round(self.elapsed), "cpu_seconds": round(self.elapsed_cpu)}


Denoised = tuple[torch.Tensor, torch.Tensor]
"""The UNet's noise prediction and the text encoder's hidden states it was conditioned on."""


class CaptionProbe(torch.nn.Module):
    """Linear read-outs of what a caption names, from the text encoder's end-of-text and padding positions: the
    background colour, and each shape's colour and kind (or none), shapes in caption order.

    Trained beside the UNet (its loss weighted by ``caption_probe_weight``) and then thrown away. It makes the
    text encoder carry every word of the caption into those positions, which every caption has and which the
    causal text encoder fills last. Without it, whether they learn to hold the background colour (the caption's
    last word) was left to the run's seed: measured on 2026-11-29 on the saved text encoders, changing only the
    background word moved the encoding 1.04x as far as changing a shape's colour in run 5 (backgrounds 100%
    right) and 1.88x in the weights before them (100%), but 0.42x in run 6 (seed 1, 42% right), whose
    end-of-text and padding positions barely changed with the background word. The same recipe with the probe
    and seed 1 (the card's run 7) drew backgrounds right 94% of the time, at 0.93x.
    """

    SLOTS = 2

    def __init__(self, width: int, end_token: int) -> None:
        super().__init__()
        self.end_token = end_token
        self.background = torch.nn.Linear(width, len(COLOURS))
        self.colours = torch.nn.ModuleList(torch.nn.Linear(width, len(COLOURS) + 1) for _ in range(self.SLOTS))
        self.kinds = torch.nn.ModuleList(torch.nn.Linear(width, len(SHAPES) + 1) for _ in range(self.SLOTS))

    def targets(self, scenes: Sequence[Scene]) -> torch.Tensor:
        """Per scene: background, then colour and kind of each shape slot (left to right, as the caption names
        them); an empty slot is the last class of each."""
        rows = []
        for scene in scenes:
            shapes = sorted(scene.shapes, key=lambda shape: shape.centre[0])
            row = [COLOURS.index(scene.background)]
            for slot in range(self.SLOTS):
                if slot < len(shapes):
                    row += [COLOURS.index(shapes[slot].colour), SHAPES.index(shapes[slot].kind)]
                else:
                    row += [len(COLOURS), len(SHAPES)]
            rows.append(row)
        return torch.tensor(rows)

    def summary(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each caption's hidden states averaged over its end-of-text and padding tokens: what the probe reads."""
        ends = (tokens == self.end_token).unsqueeze(-1).to(hidden.dtype)
        return (hidden * ends).sum(dim=1) / ends.sum(dim=1)

    def loss(
        self, hidden: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, kept: Sequence[bool]
    ) -> torch.Tensor:
        """Mean cross-entropy of the read-outs over the captions ``kept`` (a dropped, empty caption names nothing),
        from the mean of each caption's hidden states at its end-of-text and padding tokens."""
        rows = torch.tensor(kept, device=hidden.device)
        if not rows.any():
            return hidden.sum() * 0.0
        summary = self.summary(hidden, tokens)[rows]
        targets = targets[rows]
        heads = [self.background, *(h for pair in zip(self.colours, self.kinds, strict=True) for h in pair)]
        losses = [cross_entropy(head(summary), targets[:, i]) for i, head in enumerate(heads)]
        return torch.stack(losses).mean()


class Trainer:
    """Owns the modules, the seeded random sources and the record of one run."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        self.device = resolve_placement(config.device, "float32").device
        self.random = random.Random(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.started = time.monotonic()
        self.started_cpu = time.process_time()
        config.out.mkdir(parents=True, exist_ok=True)
        self.tokenizer: CLIPTokenizer = write_tokenizer(config.out / "tokenizer")
        self.text_encoder: CLIPTextModel = build_text_encoder(len(self.tokenizer))
        self.vae: AutoencoderKL = self._new_vae()
        self.unet: UNet2DConditionModel = build_unet()
        self.text_encoder.to(self.device)
        self.unet.to(self.device)
        self.controlnet: ControlNetModel | None = None
        self.noise_scheduler: DDPMScheduler = build_scheduler()
        self.record = Record(config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()})
        self.record.torch_threads = torch.get_num_threads()
        self.record.device = self.device.type
        self._token_cache: dict[str, torch.Tensor] = {}
        self._last_save = time.monotonic()
        self._earlier_wall_s = self._earlier_cpu_s = 0.0

    @classmethod
    def resume(cls, config: TrainConfig) -> Trainer:
        """A trainer over the model already saved in ``config.out`` (and its training record), to train on."""
        trainer = cls(config)
        out = config.out
        trainer.vae = AutoencoderKL.from_pretrained(out, subfolder="vae", dtype=torch.float32)
        trainer.text_encoder = CLIPTextModel.from_pretrained(out, subfolder="text_encoder", dtype=torch.float32)
        trainer.unet = UNet2DConditionModel.from_pretrained(out, subfolder="unet", dtype=torch.float32)
        if (out / CONTROLNET_SUBFOLDER).is_dir():
            trainer.controlnet = ControlNetModel.from_pretrained(out / CONTROLNET_SUBFOLDER, dtype=torch.float32)
        for module in (trainer.vae, trainer.text_encoder, trainer.unet, trainer.controlnet):
            if module is not None:
                module.to(trainer.device).eval()
        earlier = json.loads((out / "training.json").read_text())
        trainer.record.stages = earlier["stages"]
        trainer.record.config = {"first_run": earlier["config"], "resumed": trainer.record.config}
        trainer._earlier_wall_s, trainer._earlier_cpu_s = earlier["wall_s"], earlier["cpu_s"]
        return trainer

    def _new_vae(self) -> AutoencoderKL:
        """A VAE from the current random state, on the device, its posterior's log-variance started near -10
        (std ~0.007) instead of 0 (std 1): with a KL weight this small the variance would only shrink slowly, and
        until it did the decoder would learn from latents drowned in noise and draw blurred shapes (measured: 40%
        shape accuracy on reconstructions after 737 steps when started at 0)."""
        vae = build_vae()
        channels = vae.config.latent_channels
        with torch.no_grad():
            vae.quant_conv.bias[channels:] -= INITIAL_LOGVAR_SHIFT
        return vae.to(self.device)

    def _restart_vae(self, restart: int) -> None:
        """A fresh VAE from another seeded initialisation (``restart`` picks which), for a start that is slow."""
        torch.manual_seed(self.config.seed + 1_000 * restart)
        self.vae = self._new_vae().train()

    def remaining_cpu_s(self) -> float:
        """What is left of the run, in CPU seconds: of the compute budget, or of the wall-clock bound converted
        at the run's CPU-per-wall rate, whichever is less (the wall bound must hold on a slower machine too)."""
        cpu_left = self.config.budget_s - (time.process_time() - self.started_cpu)
        wall_left = self.config.max_wall_minutes * 60.0 - (time.monotonic() - self.started)
        return max(0.0, min(cpu_left, wall_left / self.config.wall_per_cpu))

    def stage(self, name: str, cpu_seconds: float) -> Stage:
        return Stage(name, cpu_seconds, cpu_seconds * self.config.wall_per_cpu, self.config.max_steps)

    def stream(self, offset: int) -> SceneStream:
        """The training scenes of one stage: each stage draws its own, far apart in seed, all from the run's seed."""
        return SceneStream(self.config.seed * 10_000_000 + offset, self.config.two_shape_share)

    def tokens(self, captions: Sequence[str]) -> torch.Tensor:
        rows = []
        for caption in captions:
            if caption not in self._token_cache:
                ids = self.tokenizer(caption, padding="max_length", max_length=MAX_TOKENS, truncation=True)
                self._token_cache[caption] = torch.tensor(ids.input_ids)
            rows.append(self._token_cache[caption])
        return torch.stack(rows).to(self.device)

    def drop_captions(self, scenes: Sequence[Scene], rate: float) -> list[str]:
        return ["" if self.random.random() < rate else scene.caption for scene in scenes]

    # --- stage 1: the VAE -------------------------------------------------------------------------------------

    def train_vae(self) -> None:
        config = self.config
        stage = self.stage("vae", config.budget_s * config.vae_share)
        stream = self.stream(0)
        held_out = [scene_for_seed(EVAL_SEED_BASE + i) for i in range(config.vae_check_scenes)]
        optimizer = torch.optim.AdamW(self.vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
        self.vae.train()
        check = {"colour": 0.0, "shape": 0.0}
        restarts, attempt_start = 0, 0
        while stage.running():
            x = pixels(stream.take(config.vae_batch), self.device)
            posterior = self.vae.encode(x).latent_dist
            reconstruction = self.vae.decode(posterior.sample(self.generator)).sample
            l1 = l1_loss(reconstruction, x)
            mse = mse_loss(reconstruction, x)
            kl = posterior.kl().mean()
            loss = l1 + mse + config.kl_weight * kl
            lr = learning_rate(config.vae_lr, stage.step - attempt_start, stage.fraction, warmup=50)
            descend(optimizer, loss, lr)
            stage.step += 1
            if stage.step % config.log_every == 0:
                log(stage="vae", step=stage.step, l1=l1.item(), mse=mse.item(), kl=kl.item(), s=round(stage.elapsed))
            if stage.step % config.vae_check_every == 0 or not stage.running():
                check = self.check_vae(held_out)
                log(stage="vae-check", step=stage.step, **check, s=round(stage.elapsed))
                if stage.step >= config.vae_min_steps and check["shape"] >= config.vae_pass_shape_accuracy:
                    break
                judged = stage.step - attempt_start == config.vae_restart_step and restarts < config.vae_max_restarts
                if judged and check["colour"] < config.vae_restart_colour:
                    restarts, attempt_start = restarts + 1, stage.step
                    self._restart_vae(restarts)
                    optimizer = torch.optim.AdamW(self.vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
                    log(stage="vae-restart", step=stage.step, restarts=restarts, colour=check["colour"])
        self.vae.eval()
        self.vae.register_to_config(scaling_factor=self.latent_scale())
        self.record.stages["vae"] = {**stage.summary(), **check, "restarts": restarts, "last_start_step": attempt_start}
        self.record.stages["vae"]["scaling_factor"] = self.vae.config.scaling_factor

    def train_decoder(self, seconds: float) -> None:
        """The VAE's decoder alone, its encoder frozen: the latents the UNet was trained on stay exactly the same,
        so the decoder can learn to draw sharper shapes from them after the UNet is trained."""
        config = self.config
        stage = self.stage("decoder", seconds)
        stream = self.stream(8_000_000)
        held_out = [scene_for_seed(EVAL_SEED_BASE + i) for i in range(config.vae_check_scenes)]
        self.vae.requires_grad_(False)
        parameters = [*self.vae.decoder.parameters(), *self.vae.post_quant_conv.parameters()]
        for parameter in parameters:
            parameter.requires_grad_(True)
        optimizer = torch.optim.AdamW(parameters, lr=config.decoder_lr, weight_decay=0.0)
        check = self.check_vae(held_out)
        log(stage="decoder-check", step=0, **check, s=0)
        before = best = check
        best_step, best_state = 0, self._decoder_state()
        checked_step = 0
        self.vae.train()
        while stage.running() and check["shape"] < config.vae_pass_shape_accuracy:
            x = pixels(stream.take(config.vae_batch), self.device)
            with torch.no_grad():
                latents = self.vae.encode(x).latent_dist.sample(self.generator)
            reconstruction = self.vae.decode(latents).sample
            l1 = l1_loss(reconstruction, x)
            mse = mse_loss(reconstruction, x)
            edges = edge_loss(reconstruction, x)
            lr = learning_rate(config.decoder_lr, stage.step, stage.fraction, warmup=20)
            descend(optimizer, l1 + mse + edges, lr)
            stage.step += 1
            if stage.step % config.log_every == 0:
                log(stage="decoder", step=stage.step, l1=l1.item(), edges=edges.item(), s=round(stage.elapsed))
            if stage.step % config.vae_check_every == 0:
                check, checked_step = self.check_vae(held_out), stage.step
                log(stage="decoder-check", step=stage.step, **check, s=round(stage.elapsed))
                if _ranks_above(check, best):
                    best, best_step, best_state = check, stage.step, self._decoder_state()
        if checked_step != stage.step:  # the stage did not end on a check: see how the end compares
            check = self.check_vae(held_out)
        kept_step = stage.step
        if _ranks_above(best, check):
            self.vae.load_state_dict(best_state)
            check, kept_step = best, best_step
            log(stage="decoder-kept", step=best_step, **best)
        self.vae.eval()
        self.vae.requires_grad_(False)
        self.record.stages["decoder"] = {**stage.summary(), **check, "before": before, "kept_step": kept_step}

    def _decoder_state(self) -> dict[str, torch.Tensor]:
        """A copy of the VAE's weights, to go back to: the decoder refinement first makes shapes worse, then better
        (run 4 of the model card: 73% -> 60% at its step 200, 80% at step 1300, 76% at its end), so the stage
        keeps the best decoder its checks saw (the one it started from, if none was better)."""
        return {name: value.detach().clone() for name, value in self.vae.state_dict().items()}

    @torch.no_grad()
    def check_vae(self, held_out: Sequence[Scene]) -> dict[str, float]:
        """Colour and shape accuracy of the detector on reconstructions of held-out scenes."""
        self.vae.eval()
        reconstructions = []
        for start in range(0, len(held_out), 32):
            batch = pixels(held_out[start : start + 32], self.device)
            reconstructions += to_images(self.vae.decode(self.vae.encode(batch).latent_dist.mode()).sample)
        self.vae.train()
        colour, shape = shape_agreement(held_out, reconstructions)
        return {"colour": colour, "shape": shape}

    @torch.no_grad()
    def latent_scale(self) -> float:
        """1 / the standard deviation of the latents, so the UNet sees unit-variance latents (SD's 0.18215)."""
        scenes = SceneStream(EVAL_SEED_BASE + 50_000).take(128)
        latents = self.vae.encode(pixels(scenes, self.device)).latent_dist.sample()
        return float(1.0 / latents.std())

    # --- stage 2: the UNet and the text encoder ----------------------------------------------------------------

    @torch.no_grad()
    def latents(self, scenes: Sequence[Scene]) -> torch.Tensor:
        posterior = self.vae.encode(pixels(scenes, self.device)).latent_dist
        return posterior.sample(self.generator) * self.vae.config.scaling_factor

    def noised(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward process at uniformly drawn timesteps: (x_t, t, eps)."""
        noise = torch.randn(latents.shape, generator=self.generator).to(self.device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=self.generator).to(self.device)
        return self.noise_scheduler.add_noise(latents, noise, timesteps), timesteps, noise

    def denoising_loss(self, prediction: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The seed guide's ||eps - eps_theta(x_t, t)||^2, each sample weighted by min(SNR_t, gamma) / SNR_t when
        ``snr_gamma`` is set (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy")."""
        if self.config.snr_gamma is None:
            return mse_loss(prediction, noise)
        per_sample = mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        snr = compute_snr(self.noise_scheduler, timesteps)
        return (per_sample * snr.clamp(max=self.config.snr_gamma) / snr).mean()

    def denoiser(self) -> tuple[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Denoised], bool]:
        """eps_theta(x_t, t, caption tokens) and the text encoder's states it was given: the text encoder and the
        UNet as one function, compiled (the bool) when ``config.compile`` asks and this machine can (see
        ``compile_unavailable``)."""

        def predict(noisy: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor) -> Denoised:
            hidden = self.text_encoder(tokens)[0]
            return self.unet(noisy, timesteps, hidden).sample, hidden

        if not self.config.compile:
            return predict, False
        if reason := compile_unavailable(self.device):
            log(stage="unet", compiled=False, reason=reason)
            return predict, False
        return torch.compile(predict), True

    def train_unet(self, seconds: float) -> None:
        config = self.config
        stage = self.stage("unet", seconds)
        stream = self.stream(3_000_000)
        parameters = [*self.unet.parameters(), *self.text_encoder.parameters()]
        probe = None  # built only when used: its initialisation draws from torch's random state
        if config.caption_probe_weight:
            probe = CaptionProbe(self.text_encoder.config.hidden_size, self.tokenizer.eos_token_id).to(self.device)
        trained = [*parameters, *probe.parameters()] if probe is not None else parameters
        optimizer = torch.optim.AdamW(trained, lr=config.unet_lr, weight_decay=1e-2)
        ema = EMAModel(parameters, decay=0.9995, use_ema_warmup=True, power=0.75)
        self.unet.train()
        self.text_encoder.train()
        predict, compiled = self.denoiser()
        first_step_s = 0.0
        losses: list[float] = []
        probe_losses: list[float] = []
        while stage.running():
            draws = config.unet_noise_draws
            scenes = stream.take(config.unet_batch // draws)
            noisy, timesteps, noise = self.noised(self.latents(scenes).repeat(draws, 1, 1, 1))
            captions = self.drop_captions(scenes * draws, config.caption_dropout)
            tokens = self.tokens(captions)
            prediction, hidden = predict(noisy, timesteps, tokens)
            loss = self.denoising_loss(prediction, noise, timesteps)
            total = loss
            if probe is not None:
                kept = [bool(caption) for caption in captions]
                probe_loss = probe.loss(hidden, tokens, probe.targets(scenes * draws).to(self.device), kept)
                total = loss + config.caption_probe_weight * probe_loss
                probe_losses.append(probe_loss.item())
            descend(optimizer, total, learning_rate(config.unet_lr, stage.step, stage.fraction), parameters, ema)
            stage.step += 1
            if stage.step == 1:
                first_step_s = stage.elapsed
                log(stage="unet", first_step_s=round(first_step_s, 1), compiled=compiled)
            losses.append(loss.item())
            if stage.step % config.log_every == 0:
                log(
                    stage="unet",
                    step=stage.step,
                    loss=float(np.mean(losses[-config.log_every :])),
                    probe_loss=float(np.mean(probe_losses[-config.log_every :])) if probe_losses else None,
                    s=round(stage.elapsed),
                )
            if time.monotonic() - self._last_save > config.save_every_s:
                with self.averaged(ema, parameters):
                    self.save()
        ema.copy_to(parameters)
        self.unet.eval()
        self.text_encoder.eval()
        self.record.stages["unet"] = {
            **stage.summary(),
            "samples": stage.step * config.unet_batch,
            "compiled": compiled,
            "first_step_s": round(first_step_s, 1),
            "final_loss": float(np.mean(losses[-100:])) if losses else None,
            "final_probe_loss": float(np.mean(probe_losses[-100:])) if probe_losses else None,
        }

    def averaged(self, ema: EMAModel, parameters: list[torch.nn.Parameter]) -> _Swapped:
        return _Swapped(ema, parameters)

    # --- stage 3: the Canny ControlNet ------------------------------------------------------------------------

    def train_controlnet(self, seconds: float) -> None:
        config = self.config
        stage = self.stage("controlnet", seconds)
        stream = self.stream(6_000_000)
        for module in (self.unet, self.text_encoder):
            module.requires_grad_(False)
        controlnet = build_controlnet(self.unet).to(self.device)
        controlnet.train()
        self.controlnet = controlnet
        parameters = list(controlnet.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=config.controlnet_lr, weight_decay=0.0)
        ema = EMAModel(parameters, decay=0.999, use_ema_warmup=True, power=0.75)
        losses: list[float] = []
        while stage.running():
            scenes = stream.take(config.controlnet_batch)
            noisy, timesteps, noise = self.noised(self.latents(scenes))
            with torch.no_grad():
                captions = self.drop_captions(scenes, config.controlnet_caption_dropout)
                hidden = self.text_encoder(self.tokens(captions))[0]
            down, mid = controlnet(
                noisy,
                timesteps,
                encoder_hidden_states=hidden,
                controlnet_cond=edges(scenes, self.device),
                return_dict=False,
            )
            prediction = self.unet(
                noisy, timesteps, hidden, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample
            loss = self.denoising_loss(prediction, noise, timesteps)
            lr = learning_rate(config.controlnet_lr, stage.step, stage.fraction, warmup=50)
            descend(optimizer, loss, lr, parameters, ema)
            stage.step += 1
            losses.append(loss.item())
            if stage.step % config.log_every == 0:
                log(
                    stage="controlnet",
                    step=stage.step,
                    loss=float(np.mean(losses[-config.log_every :])),
                    s=round(stage.elapsed),
                )
        ema.copy_to(parameters)
        controlnet.eval()
        self.record.stages["controlnet"] = {
            **stage.summary(),
            "samples": stage.step * config.controlnet_batch,
            "final_loss": float(np.mean(losses[-100:])) if losses else None,
        }

    # --- saving ----------------------------------------------------------------------------------------------

    def pipeline(self) -> StableDiffusionPipeline:
        scheduler = DPMSolverMultistepScheduler.from_config(self.noise_scheduler.config)
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def save(self) -> None:
        """Save the pipeline (and the ControlNet, once there is one) into ``out`` as float32 safetensors."""
        self.pipeline().save_pretrained(self.config.out, safe_serialization=True)
        if self.controlnet is not None:
            self.controlnet.save_pretrained(self.config.out / CONTROLNET_SUBFOLDER, safe_serialization=True)
        self._last_save = time.monotonic()
        log(stage="saved", out=str(self.config.out), s=round(time.monotonic() - self.started))

    def finish(self) -> Record:
        self.save()
        record = self.record
        modules = {"vae": self.vae, "text_encoder": self.text_encoder, "unet": self.unet, "controlnet": self.controlnet}
        record.stored_dtypes = {
            name: str(module.dtype).removeprefix("torch.") for name, module in modules.items() if module is not None
        }
        record.parameters = {
            name: sum(p.numel() for p in module.parameters())
            for name, module in (
                ("text_encoder", self.text_encoder),
                ("vae", self.vae),
                ("unet", self.unet),
                ("controlnet", self.controlnet),
            )
            if module is not None
        }
        record.wall_s = round(self._earlier_wall_s + time.monotonic() - self.started, 1)
        record.cpu_s = round(self._earlier_cpu_s + time.process_time() - self.started_cpu, 1)
        (self.config.out / "training.json").write_text(json.dumps(asdict(record), indent=2) + "\n")
        return record


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot be used for training on ``device``, or None when it can: inductor builds C++
    kernels on the CPU, and Triton builds a small C launcher on CUDA, so either needs a compiler."""
    if device.type == "mps":
        return "torch.compile is not used on Apple GPUs (poorly supported there)"
    if device.type == "cpu":
        needed, names = "a C++ compiler", (os.environ.get("CXX", ""), "g++", "clang++", "c++")
    else:
        needed, names = "a C compiler", (os.environ.get("CC", ""), "gcc", "clang", "cc")
    if not any(shutil.which(name) for name in names if name):
        return f"torch.compile needs {needed} and none was found (install g++, or set CXX/CC; or pass --no-compile)"
    return None


class _Swapped:
    """Within ``with``: the EMA weights in the live modules; after it, the training weights back."""

    def __init__(self, ema: EMAModel, parameters: list[torch.nn.Parameter]) -> None:
        self.ema, self.parameters = ema, parameters

    def __enter__(self) -> None:
        self.ema.store(self.parameters)
        self.ema.copy_to(self.parameters)

    def __exit__(self, *exc: object) -> None:
        self.ema.restore(self.parameters)


FINISH_RESERVE_CPU_S = 60.0
"""Kept back from the last stage for ``finish``: the float16 checks and the saves."""


def train(config: TrainConfig) -> Record:
    """The whole run: VAE, UNet, ControlNet, then the decoder in whatever time is left; saved into ``config.out``
    after the UNet and the ControlNet (a run stopped early still leaves a usable model) and at the end."""
    trainer = Trainer(config)
    log(stage="start", config=trainer.record.config, threads=torch.get_num_threads())
    trainer.train_vae()
    log(stage="vae-done", **trainer.record.stages["vae"])
    later = config.budget_s * (config.controlnet_share + config.decoder_share) + FINISH_RESERVE_CPU_S
    trainer.train_unet(trainer.remaining_cpu_s() - later)
    log(stage="unet-done", **trainer.record.stages["unet"])
    trainer.save()
    trainer.train_controlnet(config.budget_s * config.controlnet_share)
    log(stage="controlnet-done", **trainer.record.stages["controlnet"])
    trainer.save()
    trainer.train_decoder(trainer.remaining_cpu_s() - FINISH_RESERVE_CPU_S)
    log(stage="decoder-done", **trainer.record.stages["decoder"])
    record = trainer.finish()
    log(stage="done", wall_s=record.wall_s, stored=record.stored_dtypes)
    return record


def refine_decoder(config: TrainConfig) -> Record:
    """Train the saved model's VAE decoder for ``config.minutes`` more (or until its reconstructions keep the
    shapes), leaving every other module as it is; saved back into ``config.out``."""
    trainer = Trainer.resume(config)
    log(stage="resume", out=str(config.out))
    trainer.train_decoder(config.budget_s)
    log(stage="decoder-done", **trainer.record.stages["decoder"])
    record = trainer.finish()
    log(stage="done", wall_s=record.wall_s, stored=record.stored_dtypes)
    return record


def continue_unet(config: TrainConfig) -> Record:
    """Train the saved model's UNet and text encoder for ``config.minutes`` more, the VAE and ControlNet as they
    are (a fresh optimizer and moving average, the same objective); saved back into ``config.out``."""
    trainer = Trainer.resume(config)
    earlier = trainer.record.stages["unet"]
    log(stage="resume", out=str(config.out), unet_steps=earlier["steps"])
    for module in (trainer.unet, trainer.text_encoder):
        module.requires_grad_(True)
    trainer.train_unet(config.budget_s)
    added = trainer.record.stages["unet"]
    trainer.record.stages["unet"] = {
        **added,
        "steps": earlier["steps"] + added["steps"],
        "samples": earlier["samples"] + added["samples"],
        "seconds": earlier["seconds"] + added["seconds"],
        "cpu_seconds": earlier["cpu_seconds"] + added["cpu_seconds"],
        "continued_steps": added["steps"],
    }
    log(stage="unet-done", **trainer.record.stages["unet"])
    record = trainer.finish()
    log(stage="done", wall_s=record.wall_s, stored=record.stored_dtypes)
    return record


def retrain_controlnet(config: TrainConfig) -> Record:
    """Train a fresh Canny ControlNet on the saved model's UNet for ``config.minutes`` (after ``continue_unet``,
    so the ControlNet matches the UNet it steers); saved back into ``config.out``."""
    trainer = Trainer.resume(config)
    log(stage="resume", out=str(config.out))
    trainer.train_controlnet(config.budget_s)
    log(stage="controlnet-done", **trainer.record.stages["controlnet"])
    record = trainer.finish()
    log(stage="done", wall_s=record.wall_s, stored=record.stored_dtypes)
    return record


SMOKE_OVERRIDES: dict[str, int | bool] = {
    "vae_batch": 2,
    "unet_batch": 2,
    "controlnet_batch": 2,
    "vae_check_every": 2,
    "vae_check_scenes": 4,
    "vae_min_steps": 2,
    "log_every": 1,
    "max_steps": 2,
    "compile": False,
}
"""What ``--smoke`` changes: a few steps of every stage on a few images."""


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m studio.micro.train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to save the model into (required: a run must not overwrite the committed assets/micro unasked)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=TrainConfig.minutes,
        help="compute budget of the whole run, in CPU minutes of this process",
    )
    parser.add_argument(
        "--max-wall-minutes", type=float, default=TrainConfig.max_wall_minutes, help="wall-clock bound of the whole run"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        choices=("auto", "cuda", "mps", "cpu"),
        default=TrainConfig.device,
        help="where to train (auto: a GPU when there is one)",
    )
    parser.add_argument(
        "--threads", type=int, default=TrainConfig.threads, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    parser.add_argument(
        "--two-shape-share",
        type=float,
        default=TrainConfig.two_shape_share,
        help="share of training scenes with two shapes",
    )
    parser.add_argument(
        "--snr-gamma",
        type=float,
        default=TrainConfig.snr_gamma,
        help="Min-SNR weighting of the denoising loss (0: plain MSE)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not torch.compile the UNet and text encoder (compiling took 9-58 s in the model card's runs)",
    )
    parser.add_argument("--unet-lr", type=float, default=TrainConfig.unet_lr, help="peak learning rate of the UNet")
    parser.add_argument(
        "--caption-probe-weight",
        type=float,
        default=TrainConfig.caption_probe_weight,
        help="weight of the caption probe's loss in the UNet stage (0: no probe)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few steps of each stage on a few images")
    parser.add_argument(
        "--refine-decoder",
        action="store_true",
        help="train only the VAE decoder of the model already in --out, for --minutes (the latents stay the same)",
    )
    parser.add_argument(
        "--continue-unet",
        action="store_true",
        help="train only the UNet and text encoder of the model already in --out, for --minutes more",
    )
    parser.add_argument(
        "--train-controlnet",
        action="store_true",
        help="train a fresh ControlNet on the UNet of the model already in --out, for --minutes",
    )
    args = parser.parse_args(argv)
    try:
        resolve_placement(args.device, "float32")
    except SettingsError as error:
        parser.error(str(error))
    options = {"compile": not args.no_compile, **(SMOKE_OVERRIDES if args.smoke else {})}
    return TrainConfig(
        out=args.out,
        minutes=args.minutes,
        max_wall_minutes=args.max_wall_minutes,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        two_shape_share=args.two_shape_share,
        snr_gamma=args.snr_gamma or None,
        unet_lr=args.unet_lr,
        caption_probe_weight=args.caption_probe_weight,
        refine_decoder=args.refine_decoder,
        continue_unet=args.continue_unet,
        train_controlnet=args.train_controlnet,
        **options,
    )


def main(argv: Sequence[str] | None = None) -> Record:
    config = parse_args(argv)
    if config.refine_decoder:
        return refine_decoder(config)
    if config.train_controlnet:
        return retrain_controlnet(config)
    return continue_unet(config) if config.continue_unet else train(config)


if __name__ == "__main__":
    main()
