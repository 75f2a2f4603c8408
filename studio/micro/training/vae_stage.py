"""Stages 1 and 4: the VAE until its reconstructions keep the shapes, and at the end its decoder alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.functional import l1_loss, mse_loss

from studio.micro.scenes import Scene, scene_for_seed
from studio.micro.training.base import TrainerBase
from studio.micro.training.config import EVAL_SEED_BASE, log
from studio.micro.training.data import (
    SceneStream,
    descend,
    edge_loss,
    learning_rate,
    pixels,
    ranks_above,
    shape_agreement,
    to_images,
)


class VaeStage(TrainerBase):
    """The VAE's stages, as methods of the trainer."""

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
                if ranks_above(check, best):
                    best, best_step, best_state = check, stage.step, self._decoder_state()
        if checked_step != stage.step:  # the stage did not end on a check: see how the end compares
            check = self.check_vae(held_out)
        kept_step = stage.step
        if ranks_above(best, check):
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
