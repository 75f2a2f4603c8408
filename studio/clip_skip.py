"""Clip skip: the prompt read from an earlier layer of the CLIP text encoder, as A1111 counts it (1: the last layer,
2: the one before, which most anime models were trained on).

diffusers has a ``clip_skip`` argument (one less than A1111's), but for Stable Diffusion 1.x and 2.x it cannot be
used as it is: with transformers 5.6 and later it fails (it reaches for ``text_encoder.text_model``, which
transformers flattened away; diffusers#14124, a fix open as #14043), and it applies to the prompt only, where A1111
reads the negative prompt from the same layer. So for those models the studio encodes both itself, in the job
(LoRAs on the text encoder apply), and gives diffusers the embeddings. SDXL keeps diffusers' own argument: its path
works, and counts from the penultimate layer SDXL reads by default. ``studio/prompt_encoding.py`` decides which
path a job's prompts take (weighted or long prompts are read there, clip skip included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DiffusionPipeline


def encode(pipe: DiffusionPipeline, texts: Sequence[str], skipped: int) -> torch.Tensor:
    """``texts`` through the pipeline's CLIP text encoder, read ``skipped`` layers before the last and put through
    its final layer norm, as diffusers' encoder path does for ``clip_skip`` (0: the plain prompt embeddings)."""
    tokens = pipe.tokenizer(
        pipe.maybe_convert_prompt(list(texts), pipe.tokenizer),  # a textual inversion of n vectors: n tokens
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    encoder = pipe.text_encoder
    device = pipe._execution_device
    mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    output = encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
    final_layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return final_layer_norm(output.hidden_states[-(skipped + 1)]).to(dtype=encoder.dtype, device=device)
