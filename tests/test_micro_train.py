"""The training script end to end in a few steps: every stage runs, and what it saves loads back with diffusers'
own ``from_pretrained`` as a Stable Diffusion pipeline and a ControlNet, and generates."""

import json
from pathlib import Path

import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline
from PIL import Image

from studio.micro.scenes import scene_for_seed
from studio.micro.train import SceneStream, main, parse_args, train


def test_a_smoke_run_trains_every_stage_and_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "micro"
    config = parse_args(["--smoke", "--out", str(out)])
    assert config.max_steps is not None and config.vae_batch <= 4, "the smoke run is a few steps on a few images"
    record = train(config)
    assert {name: stage["steps"] for name, stage in record.stages.items()} == {"vae": 2, "unet": 2, "controlnet": 2}
    saved = json.loads((out / "training.json").read_text())
    assert saved["stages"]["unet"]["samples"] == 2 * config.unet_batch
    assert set(saved["stored_dtypes"]) == {"vae", "text_encoder", "unet", "controlnet"}

    pipeline = StableDiffusionPipeline.from_pretrained(out, dtype=torch.float32)
    assert pipeline.vae.config.scaling_factor == record.stages["vae"]["scaling_factor"]
    assert pipeline.tokenizer.tokenize("a red circle on a blue background") == [
        "a</w>", "red</w>", "circle</w>", "on</w>", "a</w>", "blue</w>", "background</w>",
    ], "every word of the domain is one token"  # fmt: skip
    controlnet = ControlNetModel.from_pretrained(out / "controlnet", dtype=torch.float32)
    guided = StableDiffusionControlNetPipeline.from_pipe(pipeline, controlnet=controlnet, dtype=torch.float32)
    image = guided(
        "a red circle on a blue background",
        image=Image.new("RGB", (64, 64)),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (64, 64), "the native size: 16x16 latents, the VAE upsamples 4x"

    encoder_before = pipeline.vae.encoder.conv_in.weight.detach().clone()
    decoder_before = pipeline.vae.decoder.conv_out.weight.detach().clone()
    refined = main(["--smoke", "--refine-decoder", "--out", str(out)])
    assert refined.stages["decoder"]["steps"] >= 1 and set(refined.stages) >= {"vae", "unet", "controlnet"}
    vae = StableDiffusionPipeline.from_pretrained(out, dtype=torch.float32).vae
    assert torch.equal(vae.encoder.conv_in.weight.half().float(), encoder_before.half().float()), "latents unchanged"
    assert not torch.equal(vae.decoder.conv_out.weight, decoder_before), "the decoder trained"

    continued = main(["--smoke", "--continue-unet", "--out", str(out)])
    assert continued.stages["unet"]["steps"] == 4 and continued.stages["unet"]["continued_steps"] == 2


def test_the_two_shape_share_decides_how_many_training_scenes_have_two_shapes() -> None:
    """The last UNet run drew three scenes in four with two shapes; the share must hold, and each run repeat."""
    counts = [len(scene.shapes) for scene in SceneStream(0, 0.75).take(400)]
    assert 0.7 < counts.count(2) / len(counts) < 0.8
    assert [len(s.shapes) for s in SceneStream(0, 0.75).take(400)] == counts, "the same stream every run"
    assert {len(scene.shapes) for scene in SceneStream(0, 1.0).take(20)} == {2}
    assert [s.caption for s in SceneStream(5).take(8)] == [scene_for_seed(5 + i).caption for i in range(8)]
    config = parse_args(["--two-shape-share", "0.75", "--unet-lr", "4e-4"])
    assert (config.two_shape_share, config.unet_lr) == (0.75, 4e-4)
