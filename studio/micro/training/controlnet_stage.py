"""Stage 3: a Canny ControlNet copied from the UNet's encoder, trained while the UNet and text encoder stay
frozen."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from studio.micro.model import (
    build_controlnet,
)
from studio.micro.training.base import TrainerBase
from studio.micro.training.config import log
from studio.micro.training.data import descend, edges, learning_rate


class ControlNetStage(TrainerBase):
    """The ControlNet's stage, as a method of the trainer."""

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
