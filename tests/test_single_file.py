"""The tiny model written as an original-format (LDM) single file loads back through diffusers' ``from_single_file``,
offline, into the very same weights, and generates the very same image as the diffusers folder it came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from safetensors.torch import load_file

from tests.ldm_checkpoint import TEXT_ENCODER_PREFIX, UNET_PREFIX, VAE_PREFIX, save_ldm_checkpoint

COMPONENTS = ("unet", "vae", "text_encoder")

PipelineClass = type[StableDiffusionPipeline] | type[StableDiffusionInpaintPipeline]


def load_single_file(
    path: Path, folder: Path, pipeline_class: PipelineClass = StableDiffusionPipeline
) -> DiffusionPipeline:
    """The offline call: ``config`` points at the diffusers folder, so no config is looked up on the Hub."""
    pipeline = pipeline_class.from_single_file(
        str(path), config=str(folder), local_files_only=True, torch_dtype=torch.float32
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_folder(folder: Path, pipeline_class: PipelineClass = StableDiffusionPipeline) -> DiffusionPipeline:
    pipeline = pipeline_class.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def assert_same_weights(loaded: DiffusionPipeline, reference: DiffusionPipeline) -> None:
    for name in COMPONENTS:
        got = getattr(loaded, name).state_dict()
        want = getattr(reference, name).state_dict()
        assert sorted(got) == sorted(want), name
        different = [key for key in want if not torch.equal(got[key].float(), want[key].float())]
        assert not different, f"{name}: {different}"


@pytest.fixture
def checkpoint(tiny_model: Path, tmp_path: Path) -> Path:
    return save_ldm_checkpoint(tiny_model, tmp_path / "checkpoints" / "tiny-sd.safetensors")


def test_checkpoint_is_in_the_original_layout(checkpoint: Path) -> None:
    state = load_file(checkpoint)
    assert infer_diffusers_model_type(state) == "v1"
    assert all(key.startswith((UNET_PREFIX, VAE_PREFIX, TEXT_ENCODER_PREFIX)) for key in state)
    assert state[f"{UNET_PREFIX}input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert state[f"{VAE_PREFIX}decoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)  # a 1x1 conv, as in LDM
    assert f"{TEXT_ENCODER_PREFIX}text_model.embeddings.position_embedding.weight" in state


def test_single_file_loads_offline_with_the_same_weights(checkpoint: Path, tiny_model: Path) -> None:
    assert_same_weights(load_single_file(checkpoint, tiny_model), load_folder(tiny_model))


def test_single_file_generates_the_same_image(checkpoint: Path, tiny_model: Path) -> None:
    images = []
    for pipeline in (load_single_file(checkpoint, tiny_model), load_folder(tiny_model)):
        result = pipeline(
            "a photo of a red cat",
            width=64,
            height=64,
            num_inference_steps=3,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(0),
        )
        images.append(result.images)
    assert images[0].shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(images[0], images[1])


def test_inpainting_checkpoint_loads_with_the_same_weights(tiny_inpaint_model: Path, tmp_path: Path) -> None:
    path = save_ldm_checkpoint(tiny_inpaint_model, tmp_path / "tiny-sd-inpainting.safetensors")
    assert infer_diffusers_model_type(load_file(path)) == "inpainting"  # 9 input channels
    assert_same_weights(
        load_single_file(path, tiny_inpaint_model, StableDiffusionInpaintPipeline),
        load_folder(tiny_inpaint_model, StableDiffusionInpaintPipeline),
    )


def test_the_studio_loads_a_single_file_checkpoint(tiny_model: Path, checkpoint: Path) -> None:
    """Through the studio's own loading code: --model file.safetensors --model-config folder, offline."""
    from studio.composition import build_studio
    from studio.requests import Txt2ImgRequest
    from tests.conftest import make_settings

    from_file = build_studio(make_settings(checkpoint, None, model_config=str(tiny_model), offline=True))
    from_folder = build_studio(make_settings(tiny_model, None))
    assert from_file.manager.current().family == "SD 1.x"
    assert type(from_file.manager.current().pipeline).__name__ == "StableDiffusionPipeline"
    request = Txt2ImgRequest("a cat", width=64, height=64, num_inference_steps=3, seed=5)
    a = from_file.service.txt2img(request).images[0]
    b = from_folder.service.txt2img(request).images[0]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert "Model: tiny-sd," in a.parameters, "named by its file name, without the path"
    short = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    assert f"Model hash: {short}, Model: tiny-sd," in a.parameters, "A1111's hash of the file"


def test_sdxl_single_files_are_told_apart_by_their_keys(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from studio.loading import _single_file_class

    sdxl = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, str(sdxl))
    sd15 = tmp_path / "v1.safetensors"
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2)}, str(sd15))
    assert _single_file_class(sdxl).__name__ == "StableDiffusionXLPipeline"
    assert _single_file_class(sd15).__name__ == "StableDiffusionPipeline"
