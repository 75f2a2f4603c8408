"""What a training run is asked for (``TrainConfig``) and what it did (``Record``), and its JSON log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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
