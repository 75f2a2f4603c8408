"""Stage 2: the UNet and the text encoder, with the seed guide's objective (and Min-SNR weighting), the
caption probe beside them and an exponential moving average of their weights."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers.training_utils import EMAModel, compute_snr
from torch.nn.functional import mse_loss

from studio.micro.scenes import Scene
from studio.micro.training.base import TrainerBase
from studio.micro.training.caption_probe import CaptionProbe
from studio.micro.training.config import log
from studio.micro.training.data import descend, learning_rate, pixels

Denoised = tuple[torch.Tensor, torch.Tensor]
"""The UNet's noise prediction and the text encoder's hidden states it was conditioned on."""


class UnetStage(TrainerBase):
    """The UNet's stage, as methods of the trainer."""

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
