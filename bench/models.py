"""A mid-size Stable Diffusion 1.x-shaped model with random weights, for CPU benchmarks.

Speed and memory do not depend on weight values, so random weights measure what matters. The shapes follow
SD 1.x at a smaller width (tens of millions of parameters): a VAE that downsamples by 8, a three-level UNet
with cross-attention, a small CLIP text encoder. Built in code and saved to disk, so the studio's real loading
code runs, with no download.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tiny_model import _write_tokenizer  # noqa: E402


def save_bench_model(folder: Path, seed: int = 0) -> Path:
    """Save the mid-size model as a diffusers folder at ``folder`` (once; reused when it exists)."""
    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(seed)
    tokenizer = _write_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(96, 192, 384),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=256,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        sample_size=256,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=256,
            intermediate_size=1024,
            num_attention_heads=4,
            num_hidden_layers=4,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=77,
        )
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def parameter_count(pipeline: StableDiffusionPipeline) -> int:
    return sum(p.numel() for name in ("unet", "vae", "text_encoder") for p in getattr(pipeline, name).parameters())
