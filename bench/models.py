"""A mid-size Stable Diffusion 1.x-shaped model with random weights, for CPU benchmarks.

Speed and memory do not depend on weight values, so random weights measure what matters. The shapes follow
SD 1.x at a smaller width (tens of millions of parameters): a VAE that downsamples by 8, a three-level UNet
with cross-attention, a small CLIP text encoder. Built in code (with the tests' builder, at other sizes) and
saved to disk, so the studio's real loading code runs, with no download. ``--quick`` runs of the benchmarks use
the tests' tiny model instead: they prove a script works, they measure nothing worth quoting.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from diffusers import DiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tiny_model import TINY, SdShape, build_sd_pipeline, save_tiny_controlnet  # noqa: E402

BENCH = SdShape(
    unet_channels=(96, 192, 384),
    unet_down=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    unet_up=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=256,
    vae_channels=(32, 64, 128, 128),
    vae_sample_size=256,
    text_hidden=256,
    text_intermediate=1024,
    text_heads=4,
    text_layers=4,
    controlnet_embedding=(16, 32, 96, 256),
)


def save_bench_model(folder: Path, seed: int = 0, shape: SdShape = BENCH) -> Path:
    """Save the model of ``shape`` as a diffusers folder at ``folder`` (once; reused when it exists)."""
    if (folder / "model_index.json").exists():
        return folder
    pipeline = build_sd_pipeline(folder.parent / f".{folder.name}-scratch", shape, seed=seed)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def save_bench_controlnet(model: Path, folder: Path, shape: SdShape = BENCH) -> Path:
    """A ControlNet made from the model's UNet, saved at ``folder`` (once)."""
    if (folder / "config.json").exists():
        return folder
    return save_tiny_controlnet(model, folder, shape)


def bench_models(quick: bool) -> tuple[Path, Path]:
    """The benchmark model and its ControlNet, saved under the temporary folder: mid-size, or tiny when quick."""
    shape, name = (TINY, "tiny") if quick else (BENCH, "model")
    root = Path(tempfile.gettempdir())
    model = save_bench_model(root / f"diffusion-studio-bench-{name}", shape=shape)
    return model, save_bench_controlnet(model, root / f"diffusion-studio-bench-{name}-controlnet", shape)


def parameter_count(pipeline: DiffusionPipeline) -> int:
    return sum(p.numel() for name in ("unet", "vae", "text_encoder") for p in getattr(pipeline, name).parameters())
