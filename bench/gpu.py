"""GPU benchmark: full-size SD 1.5 and SDXL through the studio, beside plain diffusers in the same run and beside
the compute bound. Prints one JSON document on stdout; progress and partial results go to stderr.

    python bench/gpu.py > gpu.json               # one CUDA GPU (an H200: about 7.5 minutes, --budget-s 440)
    python bench/gpu.py --dry-run                # the CPU, tiny configs: every code path, no meaningful number
    python bench/gpu.py --phases sd15,compile    # some phases only (setup runs when one needs it)

The models are the real architectures built from their configs (written here; nothing is downloaded) with random
weights, directly on the GPU: speed and memory do not depend on weight values. SD 1.5 (and a ControlNet made
from its UNet) is saved once to a temporary folder, so the studio and plain diffusers both load it as users do.
Plain diffusers means ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` in float16 with their default
settings (their own scheduler, SDPA attention), called with ``output_type="pt"``; the studio runs its service
with its defaults (DPM++ 2M Karras, channels-last UNet on CUDA) and returns PIL images with metadata, so its
end-to-end times include that. Per-step times are CUDA events at each step's end (the studio's progress
callback, the plain pipeline's callback_on_step_end), so they hold the UNet and the sampler step only.

Phases, in order (each skipped, and said so, when the time budget cannot hold it; each runs what it can and
records its errors instead of stopping the run):
- setup: build SD 1.5 + ControlNet on the device, save them (float16).
- sd15: batch 1 and batch 8 with CFG (ms per step, seconds end to end, images/s), the UNet's FLOPs, ControlNet
  overhead, time to switch tasks, one UNet forward eager vs channels-last vs CUDA-graph replay.
- memory (own process): the studio's cold start (Python start to first image), then memory with all four tasks
  resident vs the weights of base + ControlNet, and the peak.
- compile (own process, the time left but the vae phase's): ``--compile``: compile time at load, batch 1 against
  plain, the first batch-8 run (compiles that shape), batch 8 against plain.
- vae: VAE decode time and peak memory at 1024/1536/2048 pixels a side, whole vs tiled.
- sdxl: SDXL at 1024x1024, batch 1 and 8, vs plain.
- cold (own process): plain diffusers' cold start, beside the studio's from the memory phase.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from studio.composition import Studio, build_studio  # noqa: E402
from studio.devices import resolve_placement  # noqa: E402
from studio.fast_paths import SpeedOptions, is_compiled  # noqa: E402
from studio.loading import MemoryOptions  # noqa: E402
from studio.model_manager import ModelManager, Task  # noqa: E402
from studio.requests import ControlNetRequest, Img2ImgRequest, InpaintRequest, Txt2ImgRequest  # noqa: E402
from studio.settings import Settings  # noqa: E402
from tests.tiny_model import TINY, _write_tokenizer  # noqa: E402

diffusers_logging.disable_progress_bar()  # the output's tail is read back from the GPU machine: keep it to results
transformers_logging.disable_progress_bar()

PHASES = ("sd15", "memory", "compile", "vae", "sdxl", "cold")
PHASE_SECONDS = {"setup": 30, "sd15": 60, "vae": 20, "memory": 35, "sdxl": 60, "compile": 150, "cold": 30}
"""Rough seconds each phase takes on an H200, so a phase that cannot finish in the budget is skipped."""
RESERVE_S = 15
PROMPT = "a photo of astronaut riding horse on the moon"
GUIDANCE = 7.5  # plain diffusers' default; CFG on
SEED = 1
STUDIO_SAMPLER = "DPM++ 2M Karras"
SD15_TFLOP_PER_FORWARD = 0.80
"""The issue's figure: SD 1.5's UNet, one 512x512 latent (64x64), one forward. The sd15 phase also counts it."""
PEAK_TFLOPS = 790.0
"""Dense bf16/fp16 tensor-core throughput the issue takes for the H200."""


# ----------------------------------------------------------------------------------------------------- configs


def sd15_unet_config(dry: bool) -> dict[str, Any]:
    if dry:
        return {
            "sample_size": 32,
            "block_out_channels": TINY.unet_channels,
            "down_block_types": TINY.unet_down,
            "up_block_types": TINY.unet_up,
            "cross_attention_dim": TINY.cross_attention_dim,
            "layers_per_block": 2,
        }
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280, 1280),
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "center_input_sample": False,
    }


def sdxl_unet_config(dry: bool) -> dict[str, Any]:
    if dry:
        return {
            "sample_size": 32,
            "block_out_channels": (32, 64),
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "layers_per_block": 2,
            "attention_head_dim": (2, 4),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "transformer_layers_per_block": (1, 2),
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "cross_attention_dim": 64,
        }
    return {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (5, 10, 20),
        "transformer_layers_per_block": (1, 2, 10),
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,  # six size/crop ids of 256, plus the pooled 1280
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def vae_config(dry: bool, sdxl: bool) -> dict[str, Any]:
    channels = TINY.vae_channels if dry else (128, 256, 512, 512)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": channels,
        "down_block_types": ("DownEncoderBlock2D",) * len(channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(channels),
        "layers_per_block": 2 if not dry else 1,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "sample_size": TINY.vae_sample_size if dry else (1024 if sdxl else 512),
        "scaling_factor": 0.13025 if sdxl else 0.18215,
        "force_upcast": True,  # what SD 1.5's config leaves at the default and SDXL's config says
    }


def clip_config(dry: bool, big: bool) -> CLIPTextConfig:
    """CLIP ViT-L/14's text tower (SD 1.5, SDXL's first encoder) or OpenCLIP bigG's (SDXL's second)."""
    special = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, "max_position_embeddings": 77}
    if dry:
        return CLIPTextConfig(
            vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            projection_dim=32, hidden_act="gelu", **special,
        )  # fmt: skip
    if big:
        return CLIPTextConfig(
            vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            projection_dim=1280, hidden_act="gelu", **special,
        )  # fmt: skip
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        projection_dim=768, hidden_act="quick_gelu", **special,
    )  # fmt: skip


# -------------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Run:
    """How this run measures: on the GPU at full size, or (dry) on the CPU with tiny models."""

    dry: bool
    work: Path
    deadline: float
    rounds: int
    steps: int
    sd_size: int
    xl_size: int
    batch: int

    @property
    def cuda(self) -> bool:
        return not self.dry

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.dry else "cuda")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.dry else torch.float16

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def settings(self, model: str, **extra: Any) -> Settings:
        return Settings(
            model=model,
            device=self.device.type,
            dtype="auto" if self.dry else "float16",
            outputs=None,
            preview_every=0,
            **extra,
        )


def make_run(dry: bool, work: Path, budget_s: float) -> Run:
    if dry:
        return Run(True, work, time.monotonic() + budget_s, rounds=1, steps=3, sd_size=64, xl_size=64, batch=2)
    return Run(False, work, time.monotonic() + budget_s, rounds=3, steps=25, sd_size=512, xl_size=1024, batch=8)


def log(message: str) -> None:
    print(f"[gpu-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(run: Run) -> None:
    if run.cuda:
        torch.cuda.synchronize()


def timed(run: Run, call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``call`` takes, the device's queued work included."""
    sync(run)
    start = time.perf_counter()
    result = call()
    sync(run)
    return time.perf_counter() - start, result


class StepClock:
    """The end of each denoising step: a CUDA event on a GPU (nothing waits inside the loop), the wall clock on
    the CPU. ``intervals_ms`` are the steps between the first mark and the last."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.run.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        sync(self.run)
        pairs = zip(self.marks, self.marks[1:], strict=False)
        if self.run.cuda:
            return [first.elapsed_time(second) for first, second in pairs]
        return [(second - first) * 1000 for first, second in pairs]


def median(values: list[float], digits: int = 3) -> float | None:
    return round(statistics.median(values), digits) if values else None


def memory_now(run: Run) -> int:
    return torch.cuda.memory_allocated() if run.cuda else _rss()


def memory_peak(run: Run) -> int:
    return torch.cuda.max_memory_allocated() if run.cuda else _rss()


def reset_peak(run: Run) -> None:
    gc.collect()
    if run.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def weight_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the distinct storages behind the modules' parameters and buffers (shared ones once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


def free(run: Run) -> None:
    gc.collect()
    if run.cuda:
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------- models


def build_sd15(run: Run) -> tuple[StableDiffusionPipeline, ControlNetModel]:
    """SD 1.5 and a ControlNet made from its UNet, built on the device with random weights."""
    tokenizer = _write_tokenizer(run.work / "tokenizer")
    torch.manual_seed(0)
    with torch.device(run.device):
        unet = UNet2DConditionModel(**sd15_unet_config(run.dry))
        vae = AutoencoderKL(**vae_config(run.dry, sdxl=False))
        text_encoder = CLIPTextModel(clip_config(run.dry, big=False))
        embedding = TINY.controlnet_embedding if run.dry else (16, 32, 96, 256)
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embedding)
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipeline.to(dtype=run.dtype), controlnet.to(dtype=run.dtype)


def build_sdxl(run: Run) -> StableDiffusionXLPipeline:
    tokenizer = _write_tokenizer(run.work / "tokenizer")
    torch.manual_seed(0)
    with torch.device(run.device):
        unet = UNet2DConditionModel(**sdxl_unet_config(run.dry))
        vae = AutoencoderKL(**vae_config(run.dry, sdxl=True))
        text_encoder = CLIPTextModel(clip_config(run.dry, big=False))
        text_encoder_2 = CLIPTextModelWithProjection(clip_config(run.dry, big=True))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,  # the same for both: an invisible watermark is not what is measured
    )
    return pipeline.to(dtype=run.dtype)


def load_plain(run: Run, folder: Path) -> StableDiffusionPipeline:
    pipeline = StableDiffusionPipeline.from_pretrained(folder, dtype=run.dtype).to(run.device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def make_studio(run: Run, folder: Path, controlnet: Path | None = None, compile: bool = False) -> Studio:
    """The studio as ``python app.py --model folder [--compile]`` builds it. A dry run compiles with dynamo's
    eager backend (inductor takes minutes per shape on a CPU)."""
    extra: dict[str, Any] = {"controlnet_model": str(controlnet) if controlnet else None, "compile": compile}
    settings = run.settings(str(folder), **extra)
    if not (run.dry and compile):
        return build_studio(settings)
    manager = ModelManager(
        str(folder),
        resolve_placement(settings.device, settings.dtype),
        controlnet_source=settings.controlnet_model,
        speed=SpeedOptions(compile=True, backend="eager"),
        memory=MemoryOptions(),
    )
    return build_studio(settings, manager)


def control_image(size: int) -> Image.Image:
    """A white-on-black edge map: a frame and a diagonal."""
    image = Image.new("RGB", (size, size))
    for i in range(size):
        for x, y in ((i, i), (i, 4), (4, i), (i, size - 5), (size - 5, i)):
            image.putpixel((x, y), (255, 255, 255))
    return image


# ------------------------------------------------------------------------------------------- measuring calls


Contender = Callable[[StepClock | None, int, int], Any]
"""Runs one generation: (clock or None, steps, batch)."""


def plain_contender(pipeline: Any, size: int, **extra: Any) -> Contender:
    def call(clock: StepClock | None, steps: int, batch: int) -> Any:
        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if clock is not None:
                clock.mark()
            return tensors

        return pipeline(
            prompt=PROMPT,
            num_images_per_prompt=batch,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="pt",
            callback_on_step_end=on_step_end,
            **extra,
        ).images

    return call


def studio_contender(studio: Studio, size: int, controlnet_image: Image.Image | None = None) -> Contender:
    def call(clock: StepClock | None, steps: int, batch: int) -> Any:
        def progress(done: int, total: int) -> None:
            if clock is not None:
                clock.mark()

        common = {"num_inference_steps": steps, "guidance_scale": GUIDANCE, "seed": SEED, "batch_size": batch}
        if controlnet_image is not None:
            request = ControlNetRequest(
                controlnet_image, PROMPT, preprocessor="none", width=size, height=size, **common
            )
            return studio.service.controlnet(request, progress=progress)
        return studio.service.txt2img(Txt2ImgRequest(PROMPT, width=size, height=size, **common), progress=progress)

    return call


def race(run: Run, contenders: dict[str, Contender], batch: int, rounds: int, steps: int) -> dict[str, Any]:
    """Each contender warmed up (2 steps), then ``rounds`` rounds, interleaved: ms per denoising step (median over
    every step of every round) and seconds end to end (median of the rounds)."""
    for contender in contenders.values():
        timed(run, lambda contender=contender: contender(None, 2, batch))
    step_ms: dict[str, list[float]] = {name: [] for name in contenders}
    totals: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, contender in contenders.items():
            clock = StepClock(run)
            seconds, _ = timed(run, lambda contender=contender, clock=clock: contender(clock, steps, batch))
            totals[name].append(seconds)
            step_ms[name].extend(clock.intervals_ms())
    return {
        name: {
            "ms_per_step": median(step_ms[name]),
            "end_to_end_s": median(totals[name], 4),
            "images_per_s": round(batch / statistics.median(totals[name]), 3),
        }
        for name in contenders
    }


def unet_tflop_per_cfg_step(run: Run, unet: UNet2DConditionModel, size: int, scale: int) -> float:
    """FLOPs of one CFG step (the UNet on a batch of two latents), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    side = size // scale
    options = {"device": run.device, "dtype": run.dtype}
    latents = torch.randn(2, 4, side, side, **options)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, **options)
    extra: dict[str, Any] = {}
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, pooled, **options),
            "time_ids": torch.randn(2, 6, **options),
        }
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(latents, torch.tensor(999, device=run.device), text, return_dict=False, **extra)
    return counter.get_total_flops() / 1e12


def unet_forward_ms(run: Run, plain_unet: UNet2DConditionModel, studio_unet: UNet2DConditionModel) -> dict[str, Any]:
    """One CFG-batch UNet forward at 512x512: plain (eager), the studio's (channels-last, eager), and plain replayed
    from a CUDA graph, which shows how much of a step is launch overhead."""
    if not run.cuda:
        return {"skipped": "no CUDA"}
    options = {"device": run.device, "dtype": run.dtype}
    latents = torch.randn(2, 4, 64, 64, **options)
    text = torch.randn(2, 77, plain_unet.config.cross_attention_dim, **options)
    timestep = torch.tensor(500, device=run.device)

    def time_ms(call: Callable[[], Any], repeats: int = 20) -> float:
        for _ in range(3):
            call()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            call()
        end.record()
        torch.cuda.synchronize()
        return round(start.elapsed_time(end) / repeats, 3)

    found: dict[str, Any] = {}
    with torch.no_grad():
        found["plain_eager_ms"] = time_ms(lambda: plain_unet(latents, timestep, text, return_dict=False))
        found["studio_channels_last_eager_ms"] = time_ms(
            lambda: studio_unet(latents, timestep, text, return_dict=False)
        )
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    plain_unet(latents, timestep, text, return_dict=False)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                plain_unet(latents, timestep, text, return_dict=False)
            found["plain_cuda_graph_replay_ms"] = time_ms(graph.replay)
            del graph
        except RuntimeError as error:
            found["plain_cuda_graph_replay_error"] = str(error)[:300]
    return found


# ---------------------------------------------------------------------------------------------------- phases


@dataclass
class Shared:
    """What the phases of the main process hand on to each other: where setup saved the models."""

    sd15_folder: Path | None = None
    controlnet_folder: Path | None = None


def phase_setup(run: Run, shared: Shared) -> dict[str, Any]:
    seconds, (pipeline, controlnet) = timed(run, lambda: build_sd15(run))
    folder, cn_folder = run.work / "sd15", run.work / "sd15-controlnet"
    save_seconds, _ = timed(run, lambda: pipeline.save_pretrained(folder, safe_serialization=True))
    controlnet.save_pretrained(cn_folder, safe_serialization=True)
    found = {
        "build_on_device_s": round(seconds, 2),
        "save_s": round(save_seconds, 2),
        "unet_parameters_m": round(sum(p.numel() for p in pipeline.unet.parameters()) / 1e6, 1),
        "controlnet_parameters_m": round(sum(p.numel() for p in controlnet.parameters()) / 1e6, 1),
        "weights_mib": mib(weight_bytes(pipeline.unet, pipeline.vae, pipeline.text_encoder)),
    }
    shared.sd15_folder, shared.controlnet_folder = folder, cn_folder
    return found


def phase_sd15(run: Run, shared: Shared) -> dict[str, Any]:
    assert shared.sd15_folder is not None and shared.controlnet_folder is not None
    found: dict[str, Any] = {}
    plain = load_plain(run, shared.sd15_folder)
    studio = make_studio(run, shared.sd15_folder, shared.controlnet_folder)
    studio.manager.current()
    size = run.sd_size
    contenders = {"plain": plain_contender(plain, size), "studio": studio_contender(studio, size)}
    found["batch_1"] = race(run, contenders, 1, run.rounds, run.steps)
    log(f"sd15 batch 1: {found['batch_1']}")
    # Random weights must not overflow float16: a NaN image would send the studio's decode round again in float32.
    found["nan_check"] = {
        "plain_output_has_nan": bool(torch.isnan(contenders["plain"](None, 2, 1)).any()),
        "studio_notes": list(contenders["studio"](None, 2, 1).notes),
    }
    found[f"batch_{run.batch}"] = race(run, contenders, run.batch, 2, run.steps)
    scale = studio.manager.current().pipeline.vae_scale_factor
    tflop = unet_tflop_per_cfg_step(run, plain.unet, size, scale)
    bound_ms = tflop / PEAK_TFLOPS * 1000
    found["flops"] = {
        "tflop_per_cfg_step_counted": round(tflop, 3),
        "tflop_per_forward_counted": round(tflop / 2, 3),
        "tflop_per_forward_issue": SD15_TFLOP_PER_FORWARD,
        "bound_ms_per_cfg_step_counted": round(bound_ms, 3),
        "bound_ms_per_cfg_step_issue": round(2 * SD15_TFLOP_PER_FORWARD / PEAK_TFLOPS * 1000, 3),
    }
    for name, result in found["batch_1"].items():
        if result["ms_per_step"]:
            found["flops"][f"{name}_batch_1_fraction_of_bound"] = round(bound_ms / result["ms_per_step"], 3)
    # ControlNet overhead: the same batch-1 run with a ControlNet, against the run without it.
    controlnet = ControlNetModel.from_pretrained(shared.controlnet_folder, dtype=run.dtype).to(run.device)
    plain_cn = StableDiffusionControlNetPipeline.from_pipe(plain, controlnet=controlnet)
    plain_cn.set_progress_bar_config(disable=True)
    edges = control_image(size)
    with_cn = {
        "plain": plain_contender(plain_cn, size, image=edges),
        "studio": studio_contender(studio, size, controlnet_image=edges),
    }
    cn = race(run, with_cn, 1, 2, run.steps)
    found["controlnet_batch_1"] = {
        name: {**cn[name], "step_overhead": _ratio(cn[name]["ms_per_step"], found["batch_1"][name]["ms_per_step"])}
        for name in cn
    }
    found["switch_tasks_ms"] = switch_times(run, studio, plain, controlnet)
    del plain_cn, controlnet
    free(run)
    # Last: a failed CUDA-graph capture is the one thing here that could upset what runs after it.
    found["unet_forward"] = unet_forward_ms(run, plain.unet, studio.manager.current().pipeline.unet)
    return found


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base - 1, 4) if value and base else None


def switch_times(
    run: Run, studio: Studio, plain: StableDiffusionPipeline, controlnet: ControlNetModel
) -> dict[str, Any]:
    """Deriving each task's pipeline with everything loaded: the studio's job(), and plain diffusers' from_pipe.
    And what plain users without from_pipe do: load the image-to-image pipeline again."""
    found: dict[str, Any] = {"studio": {}, "plain_from_pipe": {}}
    for task in Task:
        seconds = []
        for _ in range(6):

            def derive(task: Task = task) -> None:
                with studio.manager.job(task, STUDIO_SAMPLER, [SEED]):
                    pass

            seconds.append(timed(run, derive)[0] * 1000)
        found["studio"][task.value] = median(seconds[1:])
    plain_classes: dict[str, tuple[Any, dict[str, Any]]] = {
        "img2img": (StableDiffusionImg2ImgPipeline, {}),
        "inpaint": (StableDiffusionInpaintPipeline, {}),
        "controlnet": (StableDiffusionControlNetPipeline, {"controlnet": controlnet}),
    }
    for name, (pipeline_class, extra) in plain_classes.items():
        seconds = [timed(run, lambda c=pipeline_class, e=extra: c.from_pipe(plain, **e))[0] * 1000 for _ in range(6)]
        found["plain_from_pipe"][name] = median(seconds[1:])
    assert studio.settings.model is not None
    folder = studio.settings.model
    seconds, reloaded = timed(run, lambda: StableDiffusionImg2ImgPipeline.from_pretrained(folder, dtype=run.dtype))
    move, _ = timed(run, lambda: reloaded.to(run.device))
    found["plain_from_pretrained_img2img_ms"] = round((seconds + move) * 1000, 1)
    return found


def phase_sdxl(run: Run, shared: Shared) -> dict[str, Any]:
    found: dict[str, Any] = {}
    seconds, plain = timed(run, lambda: build_sdxl(run))
    plain.set_progress_bar_config(disable=True)
    found["build_on_device_s"] = round(seconds, 2)
    found["unet_parameters_m"] = round(sum(p.numel() for p in plain.unet.parameters()) / 1e6, 1)
    # The studio's own copy: its fast paths (channels-last) change modules in place; plain keeps the defaults.
    copies = {
        name: copy.deepcopy(module) if isinstance(module, torch.nn.Module) else module
        for name, module in plain.components.items()
        if module is not None
    }
    studio_pipeline = StableDiffusionXLPipeline(**copies, add_watermarker=False)
    manager = ModelManager(
        "sdxl-random-weights",
        resolve_placement(run.device.type, "auto" if run.dry else "float16"),
        loader=lambda *args, **kwargs: studio_pipeline,
    )
    studio = build_studio(run.settings("sdxl-random-weights"), manager)
    studio.manager.current()
    size = run.xl_size
    contenders = {"plain": plain_contender(plain, size), "studio": studio_contender(studio, size)}
    found["batch_1"] = race(run, contenders, 1, 2, run.steps)
    log(f"sdxl batch 1: {found['batch_1']}")
    if run.left() > 45 or run.dry:
        found[f"batch_{run.batch}"] = race(run, contenders, run.batch, 1, run.steps)
    else:
        found[f"batch_{run.batch}"] = {"skipped": f"out of time ({run.left():.0f} s left)"}
    tflop = unet_tflop_per_cfg_step(run, plain.unet, size, plain.vae_scale_factor)
    found["flops"] = {
        "tflop_per_cfg_step_counted": round(tflop, 3),
        "bound_ms_per_cfg_step": round(tflop / PEAK_TFLOPS * 1000, 3),
    }
    return found


def phase_vae(run: Run, shared: Shared) -> dict[str, Any]:
    """The SD VAE's decode, whole and tiled, at sizes around the tiling threshold (studio/vae_decode.py)."""
    assert shared.sd15_folder is not None
    vae = AutoencoderKL.from_pretrained(shared.sd15_folder, subfolder="vae", dtype=run.dtype).to(run.device)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    sides = (64, 80, 96) if run.dry else (1024, 1536, 2048)
    found: dict[str, Any] = {}
    for side in sides:
        latents = torch.randn(1, 4, side // scale, side // scale, device=run.device, dtype=run.dtype)
        found[str(side)] = {}

        def decode(latents: torch.Tensor = latents) -> Any:
            with torch.no_grad():
                return vae.decode(latents, return_dict=False)

        for tiled in (False, True):
            vae.use_tiling = tiled
            reset_peak(run)
            before = memory_now(run)
            try:
                timed(run, decode)  # warm-up
                reset_peak(run)
                seconds, _ = timed(run, decode)
                found[str(side)]["tiled" if tiled else "whole"] = {
                    "ms": round(seconds * 1000, 1),
                    "peak_extra_mib": mib(memory_peak(run) - before),
                }
            except torch.OutOfMemoryError:
                found[str(side)]["tiled" if tiled else "whole"] = {"error": "out of memory"}
    return found


# ------------------------------------------------------------------------------- phases in their own process


def child_memory(run: Run, folder: Path, controlnet: Path, emit: Callable[[str, Any], None]) -> None:
    """Only the studio in this process. First its cold start: from here (Python started, modules imported) to
    the first 25-step image. Then memory with all four tasks used, against the weights it holds."""
    emit("imported_at", time.time())
    reset_peak(run)
    start = time.perf_counter()
    studio = make_studio(run, folder, controlnet)
    size = run.sd_size
    first = Txt2ImgRequest(PROMPT, num_inference_steps=run.steps, width=size, height=size, seed=SEED)
    picture = studio.service.txt2img(first).images[0].image
    sync(run)
    emit("done_at", time.time())
    emit("load_and_first_image_s", round(time.perf_counter() - start, 3))
    gc.collect()
    emit("txt2img_resident_mib", mib(memory_now(run)))
    emit("txt2img_peak_mib", mib(memory_peak(run)))
    common = {"num_inference_steps": 4, "seed": SEED}
    studio.service.img2img(Img2ImgRequest(picture, PROMPT, width=size, height=size, **common))
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (size // 4, size // 4, size * 3 // 4, size * 3 // 4))
    studio.service.inpaint(InpaintRequest(picture, mask, PROMPT, **common))
    studio.service.controlnet(
        ControlNetRequest(control_image(size), PROMPT, preprocessor="none", width=size, height=size, **common)
    )
    gc.collect()
    pipeline = studio.manager.current().pipeline
    base = weight_bytes(pipeline.unet, pipeline.vae, pipeline.text_encoder)
    weights = base + studio.manager.extras.used_bytes
    resident, peak = memory_now(run), memory_peak(run)
    emit("weights_base_plus_controlnet_mib", mib(weights))
    emit("all_tasks_resident_mib", mib(resident))
    emit("all_tasks_peak_mib", mib(peak))
    emit("all_tasks_resident_over_weights", round(resident / weights, 4))
    emit("all_tasks_peak_over_weights", round(peak / weights, 4))
    emit("plain_four_pipelines_weights_mib_computed", mib(4 * base + studio.manager.extras.used_bytes))


def child_compile(run: Run, folder: Path, emit: Callable[[str, Any], None]) -> None:
    """--compile: compile time at load (the native size, batch 1), then batch 1 against plain; then the first
    batch-8 run (compiles that shape), then batch 8 against plain."""
    plain = load_plain(run, folder)
    studio = make_studio(run, folder, compile=True)
    emit("compiling_at_load", "started; if this run was stopped before load_with_compile_s, it took longer")
    load_seconds, model = timed(run, studio.manager.current)
    emit("load_with_compile_s", round(load_seconds, 2))
    compile_seconds = studio.manager.compile_seconds.get(model.source)
    emit("compile_at_load_s", None if compile_seconds is None else round(compile_seconds, 2))
    emit("unet_still_compiled", is_compiled(model.pipeline.unet))  # False: compiling failed, it serves eagerly
    emit("dynamo_counters", _dynamo_counters())
    size = run.sd_size
    contenders = {"plain": plain_contender(plain, size), "studio_compiled": studio_contender(studio, size)}
    batch_1 = race(run, contenders, 1, run.rounds, run.steps)
    emit("batch_1", batch_1)
    emit("batch_1_speedup", _speedup(batch_1))
    batch = run.batch
    if run.left() < 90 and not run.dry:
        emit(f"batch_{batch}", {"skipped": f"out of time ({run.left():.0f} s left)"})
        return
    first, result = timed(run, lambda: contenders["studio_compiled"](None, 2, batch))
    emit(f"first_batch_{batch}_run_s", round(first, 2))
    emit(f"first_batch_{batch}_notes", list(result.notes))
    large = race(run, contenders, batch, 2, run.steps)
    emit(f"batch_{batch}", large)
    emit(f"batch_{batch}_speedup", _speedup(large))
    emit("dynamo_counters", _dynamo_counters())


def _dynamo_counters() -> dict[str, Any]:
    """Graphs compiled, frames that fell back to eager and why: whether --compile really compiled."""
    from torch._dynamo.utils import counters

    found: dict[str, Any] = {name: dict(counters[name]) for name in ("stats", "frames") if name in counters}
    if "unimplemented" in counters or "graph_break" in counters:
        breaks = {**counters.get("graph_break", {}), **counters.get("unimplemented", {})}
        found["graph_breaks"] = {str(reason)[:120]: count for reason, count in list(breaks.items())[:10]}
    if torch.cuda.is_available():
        from torch.utils._triton import has_triton

        found["triton"] = has_triton()
    return found


def _speedup(results: dict[str, Any]) -> dict[str, float | None]:
    plain, compiled = results["plain"], results["studio_compiled"]
    return {
        "ms_per_step": round(plain["ms_per_step"] / compiled["ms_per_step"], 3) if compiled["ms_per_step"] else None,
        "images_per_s": round(compiled["images_per_s"] / plain["images_per_s"], 3),
    }


def child_cold(run: Run, folder: Path, emit: Callable[[str, Any], None]) -> None:
    """Plain diffusers' cold start: from here (Python started, modules imported) to the first 25-step image."""
    emit("imported_at", time.time())
    start = time.perf_counter()
    plain = load_plain(run, folder)
    plain(PROMPT, num_inference_steps=run.steps, width=run.sd_size, height=run.sd_size, output_type="pt")
    sync(run)
    emit("done_at", time.time())
    emit("load_and_first_image_s", round(time.perf_counter() - start, 3))


def run_child(run: Run, name: str, arguments: list[str], timeout: float) -> dict[str, Any]:
    """Run ``--child name`` in a new process; whatever it reported before finishing (or being stopped at
    ``timeout``) comes back."""
    command = [sys.executable, __file__, "--child", name, "--work", str(run.work), *arguments]
    command += ["--budget-s", str(int(timeout)), *(["--dry-run"] if run.dry else [])]
    found: dict[str, Any] = {"spawned_at": time.time()}
    with tempfile.TemporaryFile(mode="w+") as output:
        # A session of its own, so that stopping it stops its helpers too (inductor's compile workers).
        process = subprocess.Popen(command, stdout=output, stderr=None, cwd=ROOT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            found["stopped"] = f"still running after {timeout:.0f} s; what it measured until then is kept"
        output.seek(0)
        for line in output:
            try:
                item = json.loads(line) if line.startswith('{"key"') else None
            except ValueError:
                item = None
            if item is not None:
                found[item["key"]] = item["value"]
    if process.returncode not in (0, None) and "stopped" not in found:
        found["exit_code"] = process.returncode
    return found


def phase_memory(run: Run, shared: Shared) -> dict[str, Any]:
    assert shared.sd15_folder is not None and shared.controlnet_folder is not None
    arguments = ["--model-dir", str(shared.sd15_folder), "--controlnet-dir", str(shared.controlnet_folder)]
    return cold_start(run_child(run, "memory", arguments, timeout=max(30.0, run.left() - RESERVE_S)))


def cold_start(found: dict[str, Any]) -> dict[str, Any]:
    """A child's start-up, from the clock readings it reported: Python start to imported, to first image."""
    if "done_at" in found:
        found["python_start_to_first_image_s"] = round(found["done_at"] - found["spawned_at"], 3)
    if "imported_at" in found:
        found["python_start_to_imported_s"] = round(found["imported_at"] - found["spawned_at"], 3)
    for key in ("spawned_at", "imported_at", "done_at"):
        found.pop(key, None)
    return found


def phase_compile(run: Run, shared: Shared) -> dict[str, Any]:
    """The time left but the vae phase's: compiling takes minutes, and three of the issue's four targets are
    about it."""
    assert shared.sd15_folder is not None
    timeout = max(60.0, run.left() - RESERVE_S - (0 if run.dry else PHASE_SECONDS["vae"]))
    found = run_child(run, "compile", ["--model-dir", str(shared.sd15_folder)], timeout=timeout)
    found.pop("spawned_at", None)
    return found


def phase_cold(run: Run, shared: Shared) -> dict[str, Any]:
    """Plain diffusers' cold start (the studio's was taken by the memory phase, in its own fresh process)."""
    assert shared.sd15_folder is not None
    child = run_child(run, "cold", ["--model-dir", str(shared.sd15_folder)], max(20.0, run.left() - 5))
    return {"plain": cold_start(child)}


PHASE_FUNCTIONS: dict[str, Callable[[Run, Shared], dict[str, Any]]] = {
    "setup": phase_setup,
    "sd15": phase_sd15,
    "memory": phase_memory,
    "compile": phase_compile,
    "sdxl": phase_sdxl,
    "vae": phase_vae,
    "cold": phase_cold,
}
NEEDS_SETUP = {"sd15", "memory", "compile", "vae", "cold"}


# ------------------------------------------------------------------------------------------------------ main


def targets(phases: dict[str, Any]) -> dict[str, Any]:
    """The issue's GPU targets, against what this run measured (None where it was not measured)."""

    def get(*path: str) -> Any:
        value: Any = phases
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    compiled_step = get("compile", "batch_1", "studio_compiled", "ms_per_step")
    step_speedup = get("compile", "batch_1_speedup", "ms_per_step")
    batch_8_speedup = get("compile", "batch_8_speedup", "images_per_s")
    resident = get("memory", "all_tasks_resident_over_weights")
    return {
        "sd15_batch_1_compiled_ms_per_cfg_step": {"value": compiled_step, "target_at_most": 5.0},
        "sd15_batch_1_compiled_speedup_over_plain": {"value": step_speedup, "target_at_least": 2.0},
        "sd15_batch_8_compiled_images_per_s_over_plain": {"value": batch_8_speedup, "target_at_least": 1.3},
        "all_tasks_resident_over_base_plus_controlnet_weights": {"value": resident, "target_at_most": 1.1},
    }


def machine(run: Run) -> dict[str, Any]:
    import diffusers
    import transformers

    info: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if run.cuda:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


@contextmanager
def work_folder(given: str | None) -> Iterator[Path]:
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="studio-gpu-bench-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description="GPU benchmark of the studio beside plain diffusers (JSON out)")
    parser.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU: every code path, quickly")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {', '.join(PHASES)}")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no phase that would end past this many seconds (440 on a GPU, 1800 for a dry run)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--controlnet-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU; use --dry-run to check it on the CPU")
    if args.child:
        if args.dry_run:
            torch.set_num_threads(1)
        run = make_run(args.dry_run, Path(args.work), args.budget_s or 600.0)

        def emit(key: str, value: Any) -> None:
            print(json.dumps({"key": key, "value": value}), flush=True)

        if args.child == "memory":
            child_memory(run, Path(args.model_dir), Path(args.controlnet_dir), emit)
        elif args.child == "compile":
            child_compile(run, Path(args.model_dir), emit)
        elif args.child == "cold":
            child_cold(run, Path(args.model_dir), emit)
        return None
    wanted = [name for name in args.phases.split(",") if name]
    unknown = set(wanted) - set(PHASES)
    if unknown:
        sys.exit(f"unknown phases {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    budget = args.budget_s if args.budget_s is not None else (1800.0 if args.dry_run else 440.0)
    threads = torch.get_num_threads()
    if args.dry_run:
        # A dry run checks code paths, not speed; one thread keeps it quick on a busy, shared machine.
        torch.set_num_threads(1)
    try:
        return _measure(args, wanted, budget)
    finally:
        torch.set_num_threads(threads)


def _measure(args: argparse.Namespace, wanted: list[str], budget: float) -> dict[str, Any]:
    started = time.monotonic()
    with work_folder(args.work) as work:
        run = make_run(args.dry_run, work, budget)
        document: dict[str, Any] = {"benchmark": "gpu", "dry_run": run.dry, **machine(run)}
        document["settings"] = {
            "prompt": PROMPT,
            "guidance_scale": GUIDANCE,
            "steps": run.steps,
            "sd15_size": run.sd_size,
            "sdxl_size": run.xl_size,
            "large_batch": run.batch,
            "rounds": run.rounds,
            "studio_sampler": STUDIO_SAMPLER,
            "budget_s": budget,
            "peak_tflops_assumed": PEAK_TFLOPS,
        }
        phases: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        errors: dict[str, str] = {}
        shared = Shared()
        order = (["setup"] if NEEDS_SETUP & set(wanted) else []) + [name for name in PHASES if name in wanted]
        for name in order:
            need = PHASE_SECONDS[name] if not run.dry else 0
            if run.left() < need:
                skipped[name] = f"out of time budget: {run.left():.0f} s left, it needs about {need} s"
                log(f"skipping {name}: {skipped[name]}")
                continue
            if name in NEEDS_SETUP and shared.sd15_folder is None and name != "setup":
                skipped[name] = "setup did not finish"
                continue
            log(f"phase {name} ({run.left():.0f} s left)")
            phase_start = time.monotonic()
            try:
                phases[name] = PHASE_FUNCTIONS[name](run, shared)
            except Exception as error:  # one phase failing is recorded; the others still run
                errors[name] = f"{type(error).__name__}: {str(error)[:500]}"
                log(f"phase {name} failed: {errors[name]}")
            free(run)
            if name in phases:
                phases[name]["phase_s"] = round(time.monotonic() - phase_start, 1)
            log(f"partial {name}: {json.dumps(phases.get(name, errors.get(name)))}")
        document["phases"] = phases
        document["targets"] = targets(phases)
        document["skipped"] = skipped
        document["errors"] = errors
        document["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(document, indent=1))
    return document


if __name__ == "__main__":
    main()
