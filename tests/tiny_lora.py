"""LoRAs for the tiny model, made with peft: random (nonzero) low-rank weights on the UNet's attention projections
and the text encoder's, saved as people download them.

``kohya`` writes the layout of kohya's sd-scripts, which A1111 and Civitai LoRAs have (``lora_unet_...``,
``lora_te_...``, ``.lora_down``/``.lora_up`` and an ``.alpha`` per module); ``diffusers`` writes the layout of
diffusers' ``save_lora_weights`` (``unet.…lora.down.weight``). Both load through the studio's real LoRA code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _lora_state(module: torch.nn.Module, targets: list[str], rank: int, scale: float) -> dict[str, torch.Tensor]:
    # init_lora_weights=False: both A and B random, so the LoRA changes the output from the start.
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False)
    injected = inject_adapter_in_model(config, module)
    state = get_peft_model_state_dict(injected)
    return {key: value * scale for key, value in state.items()}


def save_tiny_lora(
    model_folder: Path, path: Path, *, seed: int = 0, layout: str = "kohya", rank: int = 4, scale: float = 1.0
) -> Path:
    """A LoRA for the tiny model at ``model_folder`` (SD 1.x, or SDXL with its second text encoder), written to
    ``path`` in ``layout`` ("kohya" or "diffusers")."""
    torch.manual_seed(seed)
    unet = _lora_state(UNet2DConditionModel.from_pretrained(model_folder, subfolder="unet"), UNET_TARGETS, rank, scale)
    encoders = [name for name in ("text_encoder", "text_encoder_2") if (model_folder / name).is_dir()]
    classes = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    texts = {
        name: _lora_state(
            classes[name].from_pretrained(model_folder, subfolder=name), TEXT_ENCODER_TARGETS, rank, scale
        )
        for name in encoders
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        layers = {f"{name}_lora_layers": convert_state_dict_to_diffusers(state) for name, state in texts.items()}
        pipeline_class = StableDiffusionXLPipeline if len(encoders) == 2 else StableDiffusionPipeline
        pipeline_class.save_lora_weights(
            path.parent,
            unet_lora_layers=convert_state_dict_to_diffusers(unet),
            weight_name=path.name,
            safe_serialization=True,
            **layers,
        )
        return path
    # kohya names the text encoders' modules from the CLIP model's root (text_model.encoder...), as older
    # transformers did; SD 1.x files call the text encoder lora_te, SDXL files lora_te1 and lora_te2.
    both = {f"unet.{k}": v for k, v in unet.items()}
    for name, state in texts.items():
        both |= {f"{name}.{k if k.startswith('text_model.') else 'text_model.' + k}": v for k, v in state.items()}
    kohya = {key: value.contiguous() for key, value in convert_state_dict_to_kohya(both).items()}
    if len(encoders) == 1:
        kohya = {key.replace("lora_te1_", "lora_te_"): value for key, value in kohya.items()}
    save_file(kohya, str(path), metadata={"ss_network_module": "networks.lora"})
    return path
