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
from collections.abc import Sequence
from pathlib import Path

import torch

from studio.devices import resolve_placement
from studio.micro.training.caption_probe import CaptionProbe
from studio.micro.training.config import EVAL_SEED_BASE, Record, TrainConfig, log
from studio.micro.training.controlnet_stage import ControlNetStage
from studio.micro.training.data import SceneStream
from studio.micro.training.unet_stage import UnetStage, compile_unavailable
from studio.micro.training.vae_stage import VaeStage
from studio.settings import SettingsError

__all__ = ["EVAL_SEED_BASE", "CaptionProbe", "SceneStream", "TrainConfig", "Trainer", "compile_unavailable", "main"]


class Trainer(VaeStage, UnetStage, ControlNetStage):
    """One run's trainer: the state of ``TrainerBase`` with every stage's methods."""


FINISH_RESERVE_CPU_S = 60.0
"""Kept back from the last stage for ``finish``: the saves."""


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
