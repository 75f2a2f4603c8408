"""The trainer's state: the modules of one run, its random sources, its budget and its record; saving."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from studio.devices import resolve_placement
from studio.micro.location import CONTROLNET_SUBFOLDER
from studio.micro.model import (
    MAX_TOKENS,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    write_tokenizer,
)
from studio.micro.scenes import Scene
from studio.micro.training.config import INITIAL_LOGVAR_SHIFT, Record, TrainConfig, log
from studio.micro.training.data import SceneStream, Stage

_Trainer = TypeVar("_Trainer", bound="TrainerBase")


class TrainerBase:
    """Owns the modules, the seeded random sources and the record of one run; the stages (one mixin each, in
    their own modules) train them, and ``save``/``finish`` write them out."""

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
    def resume(cls: type[_Trainer], config: TrainConfig) -> _Trainer:
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
