"""A tiny Stable Diffusion 1.x model built in code: real diffusers and transformers classes, random weights.

Nothing can be downloaded here, so the tests build this model, save it with ``save_pretrained`` and load it
through the studio's real loading code. It generates a 64x64 image in a fraction of a second on a CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

WORDS = (  # noqa: SIM905 - a sentence reads better than a column of words
    "a photo of cat dog red blue green yellow house tree sky sea mountain portrait painting "
    "astronaut horse riding on the moon in with and city night sunset forest"
).split()


def _write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over a handful of whole words (no merges needed: each word is one token)."""
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|startoftext|>", "<|endoftext|>"]
    letters = sorted({c for w in WORDS for c in w})
    vocab_tokens = specials + letters + [c + "</w>" for c in letters] + [w + "</w>" for w in WORDS]
    merges = ["#version: 0.2"]
    known = set(vocab_tokens)
    for word in WORDS:
        pieces = [*list(word[:-1]), word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merges.append(f"{pieces[0]} {pieces[1]}")
            if merged not in known:
                vocab_tokens.append(merged)
                known.add(merged)
            pieces = [merged, *pieces[2:]]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(dict.fromkeys(merges)) + "\n")
    # Without model_max_length the tokenizer's default is huge and padding to it fails.
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


@dataclass(frozen=True)
class SdShape:
    """The sizes of an SD 1.x-shaped model: the widths and block types of the UNet, the VAE and the text encoder.

    One builder makes every such model in code: the tiny one the tests use (``TINY``) and the mid-size one of the
    CPU benchmarks (``bench/models.py``). The VAE downsamples by 2 per level after the first.
    """

    unet_channels: tuple[int, ...] = (32, 64)
    unet_down: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D")
    unet_up: tuple[str, ...] = ("CrossAttnUpBlock2D", "UpBlock2D")
    cross_attention_dim: int = 32
    attention_head_dim: int = 8
    vae_channels: tuple[int, ...] = (32, 64)
    vae_sample_size: int = 64
    text_hidden: int = 32
    text_intermediate: int = 37
    text_heads: int = 4
    text_layers: int = 2
    controlnet_embedding: tuple[int, ...] = (16, 32)
    """The ControlNet's conditioning embedding: one stride-2 step fewer than widths, as the VAE downsamples."""


TINY = SdShape()


def build_sd_pipeline(
    scratch: Path, shape: SdShape = TINY, seed: int = 0, inpainting: bool = False
) -> StableDiffusionPipeline:
    """An SD 1.x-shaped pipeline of ``shape`` with random weights (``scratch`` holds the tokenizer files it is
    built from). ``inpainting`` gives its UNet the 9 input channels of an inpainting model (latents, mask,
    masked-image latents)."""
    torch.manual_seed(seed)
    tokenizer = _write_tokenizer(scratch / "tokenizer-src")
    unet = UNet2DConditionModel(
        block_out_channels=shape.unet_channels,
        layers_per_block=2,
        sample_size=32,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        down_block_types=shape.unet_down,
        up_block_types=shape.unet_up,
        cross_attention_dim=shape.cross_attention_dim,
        attention_head_dim=shape.attention_head_dim,
    )
    levels = len(shape.vae_channels)
    vae = AutoencoderKL(
        block_out_channels=shape.vae_channels,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=4,
        sample_size=shape.vae_sample_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=shape.text_hidden,
            intermediate_size=shape.text_intermediate,
            layer_norm_eps=1e-05,
            num_attention_heads=shape.text_heads,
            num_hidden_layers=shape.text_layers,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=77,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    pipeline_class: type[StableDiffusionPipeline] | type[StableDiffusionInpaintPipeline] = (
        StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    )
    return pipeline_class(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(scratch: Path, seed: int = 0, inpainting: bool = False) -> StableDiffusionPipeline:
    """The tiny pipeline in memory (``scratch`` holds the tokenizer files it is built from)."""
    return build_sd_pipeline(scratch, TINY, seed=seed, inpainting=inpainting)


def save_tiny_model(folder: Path, seed: int = 0, inpainting: bool = False) -> Path:
    """Build the tiny model and save it as a diffusers folder at ``folder``; returns ``folder``."""
    pipeline = build_tiny_pipeline(folder.parent / f".{folder.name}-scratch", seed=seed, inpainting=inpainting)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_sdxl_model(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL model (two text encoders, size/crop conditioning) saved as a diffusers folder."""
    torch.manual_seed(seed)
    scratch = folder.parent / f".{folder.name}-scratch"
    tokenizer = _write_tokenizer(scratch / "tokenizer-src")

    def text_config() -> CLIPTextConfig:
        return CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="gelu",
        )

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size/crop ids of 8 dims, plus the pooled text
        cross_attention_dim=64,  # both text encoders' hidden states side by side
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )
    pipeline = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(text_config()),
        text_encoder_2=CLIPTextModelWithProjection(text_config()),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_controlnet(model_folder: Path, folder: Path, shape: SdShape = TINY) -> Path:
    """A canny ControlNet made from the model's UNet (its encoder copied, zero convolutions zeroed) and saved as
    a diffusers folder. The conditioning embedding downsamples as the model's VAE does."""
    unet = UNet2DConditionModel.from_pretrained(model_folder, subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=shape.controlnet_embedding)
    # Random weights in the zero convolutions, so the ControlNet changes the output and tests can see it.
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=generator) * 0.5)
    controlnet.save_pretrained(folder, safe_serialization=True)
    return folder
