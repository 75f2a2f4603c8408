"""The micro model's modules, built from their configs: only standard diffusers and transformers classes.

Because it is made of the same classes as Stable Diffusion 1.x (CLIPTokenizer, CLIPTextModel, AutoencoderKL,
UNet2DConditionModel, ControlNetModel) and saved the same way, every pipeline and every tab of the studio loads
it with ``from_pretrained`` like any SD 1.x model. Only the sizes are small: a 64x64 picture becomes a 16x16x4
latent (the VAE downsamples 4x, which keeps the shapes' edges sharp), the text encoder is 64 wide.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from studio.micro.location import MICRO_CROSS_ATTENTION_DIM
from studio.micro.scenes import SIZE, VOCABULARY

LATENT_SIZE = SIZE // 4
TEXT_WIDTH = MICRO_CROSS_ATTENTION_DIM
MAX_TOKENS = 77
"""The prompt length every SD 1.x pipeline pads to; the text encoder must have as many positions."""
_SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def _save_tokenizer_files(folder: Path, tokens: list[str], merges: list[str]) -> CLIPTokenizer:
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary is the domain's words, one token each, plus single letters so
    that any other lowercase word still spells out (it just means nothing to the model).

    BPE merges by rank, so a word's merges can be pre-empted by another word's: each word is tokenized with
    the merges so far and the merge of its first two pieces is added, until every word is one token.
    """
    folder.mkdir(parents=True, exist_ok=True)
    characters = "abcdefghijklmnopqrstuvwxyz,."
    tokens = [*_SPECIALS, *characters, *(c + "</w>" for c in characters)]
    merges: list[str] = []
    tokenizer = _save_tokenizer_files(folder, tokens, merges)
    for word in VOCABULARY:
        while len(pieces := tokenizer.tokenize(word)) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            tokens.append(pieces[0] + pieces[1])
            tokenizer = _save_tokenizer_files(folder, tokens, merges)
    return tokenizer


def build_text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=TEXT_WIDTH,
        )
    )


def build_vae() -> AutoencoderKL:
    """Three levels (two downsamplings): 64x64x3 <-> 16x16x4.

    Two normalisation groups (8 to 32 channels each), not SD's many small ones: GroupNorm takes away each group's
    mean over the picture, and the micro scenes are mostly one flat colour, so with two channels a group the
    colour itself was normalised away and had to be relearnt from what little the groups' ratios kept. Measured
    on 2026-11-29 (VAE stage alone, seeds 0 and 1): 98-99% of the colours and 54% of the shapes right after 500
    steps with two groups; with eight, four starts had 32-95% of the colours right there, and the three of them
    whose logs were kept 17-25% of the shapes."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=SIZE,
    )


def build_unet() -> UNet2DConditionModel:
    """16x16 latents; cross-attention to the caption (and self-attention over the whole picture) at 8x8 and in the
    middle. Two levels keep a 20-step picture well under half a second on a CPU. 32/64 channels (1.0M parameters)
    train 1.5x faster per step than the earlier weights' 48/96 (2.2M), and in a one-hour run that bought more
    than the width: 54% of shapes right instead of 37% (see the model card)."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def build_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A Canny ControlNet copied from ``unet``'s encoder. Its conditioning embedding must bring the 64x64 edge
    map down to the 16x16 latent: one entry per VAE downsampling plus one (the first at full size), so it
    downsamples twice, as the VAE does."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))


def build_scheduler() -> DDPMScheduler:
    """The forward process the UNet is trained with: Stable Diffusion's 1000-step scaled-linear schedule."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    )
