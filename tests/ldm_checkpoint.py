"""Write a diffusers Stable Diffusion 1.x folder out again as one original-format (CompVis/LDM) checkpoint.

Most Stable Diffusion models people download (from Civitai, or the ``*.safetensors`` files next to an A1111
install) are single files in the original LDM layout: every weight of the UNet, the VAE and the CLIP text encoder
in one state dict, under the prefixes ``model.diffusion_model.``, ``first_stage_model.`` and
``cond_stage_model.transformer.``, with LDM's own names for the blocks. The tests need such a file to exercise
``from_single_file``, and nothing can be downloaded here, so this module builds one from the tiny diffusers model of
``tests/tiny_model.py``: it renames each diffusers key to the key diffusers' converters
(``diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``,
``convert_ldm_clip_checkpoint``) read back, and gives each tensor the shape those converters expect.

Loading the file back, offline, with the tiny folder supplying every component's config::

    StableDiffusionPipeline.from_single_file(str(path), config=str(diffusers_folder), local_files_only=True)

``config=<folder>`` is what keeps it offline (``local_files_only=True`` only makes that explicit): without it
diffusers infers the model type from the checkpoint's keys (this file is inferred as ``"v1"``, the tiny inpainting
model's as ``"inpainting"``) and fetches that type's configs from a Hub repository, and when they are not in the
cache it tries the Hub even with ``local_files_only=True``. No ``original_config`` is needed (the component loaders
refuse it together with ``config``). model_index.json, the tokenizer and the scheduler come from the folder; only
the unet, vae and text_encoder weights come from the file.

Format notes (what the converters expect, which a plain rename would get wrong):

- UNet: LDM numbers the encoder and decoder blocks flat. ``input_blocks.0.0`` is ``conv_in``; down block ``b``,
  layer ``l`` is ``input_blocks.{1 + b*(L+1) + l}`` (``.0`` the resnet, ``.1`` its transformer), and its
  downsampler is ``input_blocks.{1 + b*(L+1) + L}.0.op``, where ``L`` is ``layers_per_block``. Up block ``b``,
  layer ``l`` (``L+1`` layers) is ``output_blocks.{b*(L+1) + l}``; its upsampler sits in the block's last layer, at
  ``.1.conv`` or, when that layer has a transformer at ``.1``, at ``.2.conv``. ``middle_block.0``/``.1``/``.2`` are
  the mid resnet, transformer, resnet. Resnet parts are renamed (``norm1`` -> ``in_layers.0``, ``conv1`` ->
  ``in_layers.2``, ``time_emb_proj`` -> ``emb_layers.1``, ``norm2`` -> ``out_layers.0``, ``conv2`` ->
  ``out_layers.3``, ``conv_shortcut`` -> ``skip_connection``); transformer keys are the same in both formats.
- VAE: ``down_blocks.{b}.resnets.{r}`` is ``down.{b}.block.{r}``, but the decoder's up blocks are numbered the other
  way round: diffusers ``up_blocks.{b}`` is LDM ``up.{n-1-b}``. ``conv_shortcut`` is ``nin_shortcut``,
  ``conv_norm_out`` is ``norm_out``, the mid resnets are ``mid.block_1``/``mid.block_2`` and the mid attention is
  ``mid.attn_1`` with ``norm``/``q``/``k``/``v``/``proj_out``, whose weights are 1x1 convolutions: ``(C, C, 1, 1)``,
  not the ``(C, C)`` linear weights diffusers stores (the converter squeezes them back).
- Text encoder: the LDM key is ``cond_stage_model.transformer.text_model.<name>``. transformers >= 5.6 saves
  ``CLIPTextModel`` without the ``text_model.`` level, so it is put back here; diffusers recognises the CLIP text
  encoder by ``cond_stage_model.transformer.text_model.embeddings.position_embedding.weight`` and strips
  ``text_model.`` again when the model class has no such level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer."

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP_LEVEL = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}
_VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """The one ``*.safetensors`` file of a component folder (``unet/``, ``vae/``, ``text_encoder/``)."""
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .safetensors file in {folder}, found {[f.name for f in files]}")
    return load_file(files[0])


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def _rename(state: dict[str, torch.Tensor], rules: list[Rule], what: str) -> dict[str, str]:
    """diffusers key -> LDM key by the first rule that matches the whole key; an unmatched key is an error, so a
    model this helper does not understand fails loudly instead of writing a checkpoint with holes in it."""
    names = {}
    for key in state:
        for pattern, target in rules:
            match = pattern.fullmatch(key)
            if match:
                names[key] = target(match)
                break
        else:
            raise KeyError(f"no LDM name for {what} weight {key!r}")
    return names


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict (SD 1.x layout) in LDM names, without the prefix."""
    per_block = layers_per_block + 1
    up_blocks_with_attention = {int(k.split(".")[1]) for k in state if re.match(r"up_blocks\.\d+\.attentions\.", k)}

    def resnet(module: str, match: re.Match[str]) -> str:
        return f"{module}.{_UNET_RESNET_PARTS[match['part']]}.{match['param']}"

    def down_index(match: re.Match[str], layer: int | None = None) -> str:
        return f"input_blocks.{1 + int(match['b']) * per_block + (int(match['l']) if layer is None else layer)}"

    def up_index(match: re.Match[str], layer: int | None = None) -> str:
        return f"output_blocks.{int(match['b']) * per_block + (int(match['l']) if layer is None else layer)}"

    def upsampler(match: re.Match[str]) -> str:
        slot = 2 if int(match["b"]) in up_blocks_with_attention else 1
        return f"{up_index(match, layers_per_block)}.{slot}.conv.{match['rest']}"

    resnet_tail = rf"(?P<part>{'|'.join(_UNET_RESNET_PARTS)})\.(?P<param>weight|bias)"
    top_level = "|".join(re.escape(k) for k in _UNET_TOP_LEVEL)
    rules: list[Rule] = [
        (
            re.compile(rf"(?P<name>{top_level})\.(?P<param>weight|bias)"),
            lambda m: f"{_UNET_TOP_LEVEL[m['name']]}.{m['param']}",
        ),
        (
            re.compile(rf"down_blocks\.(?P<b>\d+)\.resnets\.(?P<l>\d+)\.{resnet_tail}"),
            lambda m: resnet(f"{down_index(m)}.0", m),
        ),
        (
            re.compile(r"down_blocks\.(?P<b>\d+)\.attentions\.(?P<l>\d+)\.(?P<rest>.+)"),
            lambda m: f"{down_index(m)}.1.{m['rest']}",
        ),
        (
            re.compile(r"down_blocks\.(?P<b>\d+)\.downsamplers\.0\.conv\.(?P<rest>.+)"),
            lambda m: f"{down_index(m, layers_per_block)}.0.op.{m['rest']}",
        ),
        (
            re.compile(rf"mid_block\.resnets\.(?P<r>[01])\.{resnet_tail}"),
            lambda m: resnet(f"middle_block.{2 * int(m['r'])}", m),
        ),
        (re.compile(r"mid_block\.attentions\.0\.(?P<rest>.+)"), lambda m: f"middle_block.1.{m['rest']}"),
        (
            re.compile(rf"up_blocks\.(?P<b>\d+)\.resnets\.(?P<l>\d+)\.{resnet_tail}"),
            lambda m: resnet(f"{up_index(m)}.0", m),
        ),
        (
            re.compile(r"up_blocks\.(?P<b>\d+)\.attentions\.(?P<l>\d+)\.(?P<rest>.+)"),
            lambda m: f"{up_index(m)}.1.{m['rest']}",
        ),
        (re.compile(r"up_blocks\.(?P<b>\d+)\.upsamplers\.0\.conv\.(?P<rest>.+)"), upsampler),
    ]
    names = _rename(state, rules, "unet")
    return {names[key]: tensor for key, tensor in state.items()}


def vae_to_ldm(state: dict[str, torch.Tensor], num_up_blocks: int) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in LDM names, without the prefix; the mid attention's projection
    weights become 1x1 convolution weights."""

    def resnet_rest(rest: str) -> str:
        return rest.replace("conv_shortcut", "nin_shortcut")

    attention_parts = "|".join(re.escape(k) for k in _VAE_ATTENTION_PARTS)
    top_level = "|".join(re.escape(k) for k in _VAE_TOP_LEVEL)
    rules: list[Rule] = [
        (
            re.compile(rf"(?P<name>{top_level})\.(?P<param>weight|bias)"),
            lambda m: f"{_VAE_TOP_LEVEL[m['name']]}.{m['param']}",
        ),
        (
            re.compile(r"encoder\.down_blocks\.(?P<b>\d+)\.resnets\.(?P<r>\d+)\.(?P<rest>.+)"),
            lambda m: f"encoder.down.{m['b']}.block.{m['r']}.{resnet_rest(m['rest'])}",
        ),
        (
            re.compile(r"encoder\.down_blocks\.(?P<b>\d+)\.downsamplers\.0\.conv\.(?P<rest>.+)"),
            lambda m: f"encoder.down.{m['b']}.downsample.conv.{m['rest']}",
        ),
        (
            re.compile(r"(?P<side>encoder|decoder)\.mid_block\.resnets\.(?P<r>\d+)\.(?P<rest>.+)"),
            lambda m: f"{m['side']}.mid.block_{int(m['r']) + 1}.{resnet_rest(m['rest'])}",
        ),
        (
            re.compile(
                rf"(?P<side>encoder|decoder)\.mid_block\.attentions\.0\.(?P<part>{attention_parts})\.(?P<param>weight|bias)"
            ),
            lambda m: f"{m['side']}.mid.attn_1.{_VAE_ATTENTION_PARTS[m['part']]}.{m['param']}",
        ),
        (
            re.compile(r"decoder\.up_blocks\.(?P<b>\d+)\.resnets\.(?P<r>\d+)\.(?P<rest>.+)"),
            lambda m: f"decoder.up.{num_up_blocks - 1 - int(m['b'])}.block.{m['r']}.{resnet_rest(m['rest'])}",
        ),
        (
            re.compile(r"decoder\.up_blocks\.(?P<b>\d+)\.upsamplers\.0\.conv\.(?P<rest>.+)"),
            lambda m: f"decoder.up.{num_up_blocks - 1 - int(m['b'])}.upsample.conv.{m['rest']}",
        ),
    ]
    names = _rename(state, rules, "vae")
    ldm = {}
    for key, tensor in state.items():
        name = names[key]
        if ".mid.attn_1." in name and name.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # linear (C, C) -> 1x1 conv (C, C, 1, 1)
        ldm[name] = tensor
    return ldm


def text_encoder_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModel`` state dict in LDM names (under ``text_model.``), without the prefix."""
    return {key if key.startswith("text_model.") else f"text_model.{key}": tensor for key, tensor in state.items()}


def ldm_state_dict(diffusers_folder: Path) -> dict[str, torch.Tensor]:
    """Every unet, vae and text_encoder weight of a diffusers SD 1.x folder, under its full LDM key."""
    unet = unet_to_ldm(_weights(diffusers_folder / "unet"), _config(diffusers_folder / "unet")["layers_per_block"])
    vae = vae_to_ldm(_weights(diffusers_folder / "vae"), len(_config(diffusers_folder / "vae")["up_block_types"]))
    text_encoder = text_encoder_to_ldm(_weights(diffusers_folder / "text_encoder"))
    checkpoint: dict[str, torch.Tensor] = {}
    for prefix, part in ((UNET_PREFIX, unet), (VAE_PREFIX, vae), (TEXT_ENCODER_PREFIX, text_encoder)):
        checkpoint.update({prefix + key: tensor.contiguous() for key, tensor in part.items()})
    return checkpoint


def save_ldm_checkpoint(diffusers_folder: Path, path: Path) -> Path:
    """Write the diffusers SD 1.x model at ``diffusers_folder`` as one LDM-format ``.safetensors`` file at ``path``
    (parent folders are created); returns ``path``. Load it back with
    ``StableDiffusionPipeline.from_single_file(str(path), config=str(diffusers_folder), local_files_only=True)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_state_dict(diffusers_folder), str(path), metadata={"format": "pt"})
    return path
