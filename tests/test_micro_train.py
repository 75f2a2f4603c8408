"""The training script end to end in a few steps: every stage runs, and what it saves loads back with diffusers'
own ``from_pretrained`` as a Stable Diffusion pipeline and a ControlNet, and generates."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline
from PIL import Image

from studio.micro.scenes import COLOURS, SHAPES, scene_for_seed
from studio.micro.train import (
    CaptionProbe,
    SceneStream,
    TrainConfig,
    Trainer,
    compile_unavailable,
    main,
    parse_args,
    train,
)


def test_a_smoke_run_trains_every_stage_and_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "micro"
    config = parse_args(["--smoke", "--out", str(out)])
    assert config.max_steps is not None and config.vae_batch <= 4, "the smoke run is a few steps on a few images"
    record = train(config)
    steps = {name: stage["steps"] for name, stage in record.stages.items()}
    assert steps == {"vae": 2, "unet": 2, "controlnet": 2, "decoder": 2}, "every stage, the decoder last"
    saved = json.loads((out / "training.json").read_text())
    assert saved["stages"]["unet"]["samples"] == 2 * config.unet_batch
    assert saved["stages"]["unet"]["final_probe_loss"] > 0, "the caption probe trains beside the UNet by default"
    assert set(saved["stored_dtypes"]) == {"vae", "text_encoder", "unet", "controlnet"}
    assert saved["device"] == "cpu", "--device auto trains on the CPU where there is no GPU, and says so"

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
    changed = not torch.equal(vae.decoder.conv_out.weight, decoder_before)
    assert changed == (refined.stages["decoder"]["kept_step"] > 0), "it trained, or kept its start (the best seen)"

    continued = main(["--smoke", "--continue-unet", "--out", str(out)])
    assert continued.stages["unet"]["steps"] == 4 and continued.stages["unet"]["continued_steps"] == 2


def test_the_two_shape_share_decides_how_many_training_scenes_have_two_shapes() -> None:
    """The recipe draws three scenes in four with two shapes; the share must hold, and each run repeat."""
    counts = [len(scene.shapes) for scene in SceneStream(0, 0.75).take(400)]
    assert 0.7 < counts.count(2) / len(counts) < 0.8
    assert [len(s.shapes) for s in SceneStream(0, 0.75).take(400)] == counts, "the same stream every run"
    assert {len(scene.shapes) for scene in SceneStream(0, 1.0).take(20)} == {2}
    assert [s.caption for s in SceneStream(5).take(8)] == [scene_for_seed(5 + i).caption for i in range(8)]
    config = parse_args(["--out", "x", "--two-shape-share", "0.5", "--unet-lr", "4e-4"])
    assert (config.two_shape_share, config.unet_lr) == (0.5, 4e-4)
    assert parse_args(["--out", "x"]).two_shape_share == 0.75, "the one-hour recipe's share is the default"
    assert parse_args(["--out", "x"]).caption_probe_weight == 0.05, "the caption probe is part of the recipe"
    assert parse_args(["--out", "x", "--caption-probe-weight", "0"]).caption_probe_weight == 0


def test_min_snr_weighting_takes_weight_off_the_nearly_clean_timesteps_only(tmp_path: Path) -> None:
    """The denoising loss is the seed guide's MSE on eps, each sample weighted by min(SNR_t, 5) / SNR_t: noisy
    timesteps (SNR below 5) keep their full weight, nearly clean ones (SNR ~1000 at t=0) almost none."""
    trainer = Trainer(parse_args(["--smoke", "--out", str(tmp_path)]))
    prediction, noise = torch.zeros(1, 4, 16, 16), torch.ones(1, 4, 16, 16)
    noisy, clean = torch.tensor([999]), torch.tensor([0])
    assert trainer.denoising_loss(prediction, noise, noisy).item() == pytest.approx(1.0)
    assert trainer.denoising_loss(prediction, noise, clean).item() < 0.01
    plain = Trainer(parse_args(["--smoke", "--snr-gamma", "0", "--out", str(tmp_path)]))
    assert plain.config.snr_gamma is None
    assert plain.denoising_loss(prediction, noise, clean).item() == pytest.approx(1.0), "0 turns it off"


def test_the_stages_share_the_wall_clock_bound_not_only_the_cpu_budget(tmp_path: Path) -> None:
    """On a machine slower than the budget assumes, the last stage must still end by --max-wall-minutes."""
    trainer = Trainer(parse_args(["--out", str(tmp_path), "--minutes", "100", "--max-wall-minutes", "50"]))
    assert trainer.remaining_cpu_s() > 99 * 60, "at the start nearly all of the CPU budget is left"
    trainer.started -= 49 * 60  # 49 of the 50 wall minutes gone, hardly any CPU time used
    assert trainer.remaining_cpu_s() == pytest.approx(2 * 60, abs=5), "1 wall minute at 2 CPU minutes per minute"
    trainer.started -= 2 * 60
    assert trainer.remaining_cpu_s() == 0.0


def test_asking_for_a_gpu_the_machine_lacks_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--device", "cuda"])
    assert "PyTorch sees no CUDA GPU; use --device auto or cpu" in capsys.readouterr().err


def test_the_compiled_denoiser_predicts_and_learns_what_the_plain_one_does(tmp_path: Path) -> None:
    """Compiling (on by default) may change only the speed: the compiled text encoder and UNet give the plain
    ones' prediction, and the same gradients to train on."""
    trainer = Trainer(parse_args(["--out", str(tmp_path)]))
    compiled, is_compiled = trainer.denoiser()
    assert is_compiled, "this machine has a C++ compiler, so the default run compiles"
    trainer.config = replace(trainer.config, compile=False)
    plain, is_compiled = trainer.denoiser()
    assert not is_compiled
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(4, 4, 16, 16, generator=generator)
    timesteps = torch.tensor([0, 300, 600, 999])
    tokens = trainer.tokens(["a red circle on a blue background", "", "a green star", "a black square"])
    results = []
    for predict in (plain, compiled):
        trainer.unet.zero_grad()
        prediction, _ = predict(noisy, timesteps, tokens)
        prediction.square().mean().backward()
        results.append((prediction.detach(), trainer.unet.conv_in.weight.grad.clone()))
    (plain_prediction, plain_grad), (compiled_prediction, compiled_grad) = results
    assert plain_prediction.abs().mean() > 0.1, "a prediction worth comparing"
    torch.testing.assert_close(compiled_prediction, plain_prediction, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(compiled_grad, plain_grad, atol=1e-5, rtol=1e-3)


def test_without_a_cpp_compiler_the_run_trains_uncompiled_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compile_unavailable(torch.device("cpu")) is None, "this machine has g++"
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = compile_unavailable(torch.device("cpu"))
    assert reason is not None and "needs a C++ compiler" in reason and "--no-compile" in reason
    _, is_compiled = Trainer(parse_args(["--out", str(tmp_path)])).denoiser()
    assert not is_compiled
    assert "needs a C compiler" in (compile_unavailable(torch.device("cuda")) or ""), "Triton builds C on CUDA"
    assert "Apple GPUs" in (compile_unavailable(torch.device("mps")) or "")


def test_no_compile_turns_compiling_off_and_the_smoke_run_does_not_compile() -> None:
    assert parse_args(["--out", "x"]).compile
    assert not parse_args(["--out", "x", "--no-compile"]).compile
    assert not parse_args(["--out", "x", "--smoke"]).compile, "compiling would take the smoke run minutes"


def test_a_vae_still_on_its_first_plateau_starts_again_from_another_initialisation(tmp_path: Path) -> None:
    """The VAE's start decides its stage: one whose reconstructions still get the colours wrong at the judging
    step is replaced by a fresh one (another seeded initialisation), at most ``vae_max_restarts`` times."""
    smoke = parse_args(["--smoke", "--out", str(tmp_path)])
    config = replace(smoke, max_steps=9, vae_check_every=2, vae_restart_step=2, vae_restart_colour=1.01)
    trainer = Trainer(config)
    first = trainer.vae
    trainer.train_vae()
    vae = trainer.record.stages["vae"]
    assert (vae["restarts"], vae["last_start_step"]) == (2, 4), "judged at steps 2 and 4, then no more restarts"
    assert trainer.vae is not first
    fresh = Trainer(replace(config, max_steps=1)).vae
    assert not torch.equal(next(fresh.parameters()), next(trainer.vae.parameters()))
    patient = Trainer(replace(config, out=tmp_path / "patient", vae_restart_colour=0.0))
    patient.train_vae()
    assert patient.record.stages["vae"]["restarts"] == 0, "a VAE past the colour bar keeps training"


def test_the_decoder_refinement_keeps_the_best_decoder_its_checks_saw(tmp_path: Path) -> None:
    """The refinement can end worse than it was at an earlier check: the stage then goes back to that decoder."""
    smoke = parse_args(["--smoke", "--out", str(tmp_path)])
    trainer = Trainer(replace(smoke, max_steps=5, vae_check_every=2))
    shapes = iter([0.5, 0.8, 0.6, 0.3])  # before the stage, steps 2 and 4, the end
    at_best: list[torch.Tensor] = []

    def scripted_check(held_out: object) -> dict[str, float]:
        shape = next(shapes)
        if shape == 0.8:
            at_best.append(trainer.vae.decoder.conv_out.weight.detach().clone())
        return {"colour": 1.0, "shape": shape}

    trainer.check_vae = scripted_check  # type: ignore[method-assign]
    trainer.train_decoder(seconds=3600.0)
    decoder = trainer.record.stages["decoder"]
    assert (decoder["steps"], decoder["kept_step"], decoder["shape"]) == (5, 2, 0.8)
    assert torch.equal(trainer.vae.decoder.conv_out.weight, at_best[0]), "the weights of step 2 are back"

    improving = Trainer(replace(smoke, out=tmp_path / "improving", max_steps=5, vae_check_every=2))
    shapes = iter([0.5, 0.6, 0.7, 0.9])
    improving.check_vae = scripted_check  # type: ignore[method-assign]
    improving.train_decoder(seconds=3600.0)
    assert (improving.record.stages["decoder"]["kept_step"], improving.record.stages["decoder"]["shape"]) == (5, 0.9)

    on_a_check = Trainer(replace(smoke, out=tmp_path / "on-a-check", max_steps=4, vae_check_every=2))
    shapes = iter([0.5, 0.6, 0.7])  # before the stage, steps 2 and 4: a fourth check would be one too many
    on_a_check.check_vae = scripted_check  # type: ignore[method-assign]
    on_a_check.train_decoder(seconds=3600.0)
    assert (on_a_check.record.stages["decoder"]["kept_step"], on_a_check.record.stages["decoder"]["shape"]) == (4, 0.7)


def test_the_restart_step_must_fall_on_a_check_step(tmp_path: Path) -> None:
    """A restart is judged on the VAE's check at ``vae_restart_step``: a step with no check would never judge."""
    with pytest.raises(ValueError, match="must be a multiple of vae_check_every"):
        TrainConfig(out=tmp_path, vae_check_every=100, vae_restart_step=250)
    assert TrainConfig(out=tmp_path, vae_check_every=100, vae_restart_step=300).vae_restart_step == 300


def test_the_caption_probe_reads_each_shape_in_caption_order_and_marks_empty_slots() -> None:
    probe = CaptionProbe(8, end_token=1)
    one, two = scene_for_seed(1, shape_count=1), scene_for_seed(2, shape_count=2)
    left, right = sorted(two.shapes, key=lambda shape: shape.centre[0])
    targets = probe.targets([one, two]).tolist()
    (only,) = one.shapes
    assert targets[0] == [
        COLOURS.index(one.background), COLOURS.index(only.colour), SHAPES.index(only.kind), len(COLOURS), len(SHAPES)
    ]  # fmt: skip
    assert targets[1] == [
        COLOURS.index(two.background),
        COLOURS.index(left.colour), SHAPES.index(left.kind),
        COLOURS.index(right.colour), SHAPES.index(right.kind),
    ], "left to right, as the caption names them"  # fmt: skip
    assert f"a {left.colour} {left.kind} and a {right.colour} {right.kind}" in two.caption


def test_the_caption_probe_makes_the_end_positions_carry_the_background_word(tmp_path: Path) -> None:
    """The probe reads only the end-of-text and padding positions, so training the text encoder with it must put
    the caption's last word there: afterwards a fresh read-out of those positions tells the held-out captions'
    backgrounds apart. Dropped (empty) captions add nothing to its loss."""
    trainer = Trainer(parse_args(["--out", str(tmp_path)]))
    encoder, end = trainer.text_encoder, trainer.tokenizer.eos_token_id
    probe = CaptionProbe(encoder.config.hidden_size, end)
    tokens = trainer.tokens([scene_for_seed(0).caption, ""])
    hidden = encoder(tokens)[0].detach().requires_grad_(True)
    probe.loss(hidden, tokens, probe.targets([scene_for_seed(0)] * 2), [True, False]).backward()
    assert hidden.grad is not None
    read = hidden.grad.abs().sum(dim=-1) > 0
    assert torch.equal(read[0], tokens[0] == end), "only the kept caption's end-of-text and padding positions"
    assert not read[1].any(), "a dropped caption names nothing"

    optimizer = torch.optim.Adam([*encoder.parameters(), *probe.parameters()], lr=3e-3)
    stream = SceneStream(0, 0.75)
    for _ in range(150):
        scenes = stream.take(32)
        tokens = trainer.tokens([scene.caption for scene in scenes])
        loss = probe.loss(encoder(tokens)[0], tokens, probe.targets(scenes), [True] * len(scenes))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def summaries(scenes: list) -> torch.Tensor:
        tokens = trainer.tokens([scene.caption for scene in scenes])
        with torch.no_grad():
            return probe.summary(encoder(tokens)[0], tokens)

    train_scenes, held_out = SceneStream(10_000, None).take(400), SceneStream(20_000, None).take(200)
    readout = torch.nn.Linear(encoder.config.hidden_size, len(COLOURS))
    fit = torch.optim.Adam(readout.parameters(), lr=1e-2)
    features, labels = summaries(train_scenes), probe.targets(train_scenes)[:, 0]
    for _ in range(300):
        fit.zero_grad()
        torch.nn.functional.cross_entropy(readout(features), labels).backward()
        fit.step()
    predicted = readout(summaries(held_out)).argmax(dim=1)
    accuracy = (predicted == probe.targets(held_out)[:, 0]).float().mean().item()
    assert accuracy > 0.9, f"the end positions name the background of {accuracy:.0%} of held-out captions"


def test_a_run_needs_its_out_folder_named_so_it_never_overwrites_the_committed_weights_unasked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    assert "the following arguments are required: --out" in capsys.readouterr().err
