"""The hires fix: where it ends, what it refuses, and through the service a second pass that redraws the first
pass's composition at the larger size, reproducibly, with progress, Stop and A1111's parameters text."""

import inspect
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio import hires
from studio import service as service_module
from studio.composition import Studio, build_studio
from studio.errors import Cancelled, InvalidRequest
from studio.metadata import parse_parameters, read_metadata
from studio.pnginfo import SentHires, settings_from_metadata
from studio.requests import Txt2ImgRequest
from studio.ui.zerogpu import STARTUP_SECONDS, estimate_seconds, generation_seconds
from studio.validation import Limits
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model

LIMITS = Limits(max_batch=8, max_pixels=1024 * 1024, max_steps=150, max_cells=16)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def hires_request(**changes: object) -> Txt2ImgRequest:
    values: dict[str, object] = {"prompt": "a red house", "seed": 11, **SMALL, "enable_hr": True}
    return Txt2ImgRequest(**{**values, **changes})  # type: ignore[arg-type]


def check(**changes: object) -> hires.HiresPass:
    values: dict[str, object] = {
        "width": 512,
        "height": 512,
        "sampler": "Euler",
        "steps": 20,
        "scale": 2.0,
        "upscaler": "Latent",
        "second_pass_steps": 0,
        "resize_x": 0,
        "resize_y": 0,
        "strength": 0.7,
    }
    return hires.check_hires(**{**values, **changes}, limits=LIMITS)  # type: ignore[arg-type]


def test_the_target_size_follows_a1111() -> None:
    assert hires.target_size(512, 768, 1.5, 0, 0) == (768, 1152)
    assert hires.target_size(512, 768, 2.0, 1024, 0) == (1024, 1536), "resize to a width: the height follows"
    assert hires.target_size(512, 768, 2.0, 0, 1000) == (664, 1000), "sides round down to multiples of 8"
    assert hires.target_size(512, 512, 2.0, 960, 640) == (960, 640)


def test_the_hires_pass_is_checked_and_every_message_says_what_to_change() -> None:
    second = check(second_pass_steps=10)
    assert (second.width, second.height, second.steps, second.steps_run) == (1024, 1024, 10, 7)
    assert check().steps == 20, "hires steps 0: as many as the first pass"
    with pytest.raises(InvalidRequest, match="hr_upscaler must be one of: Latent, .*Lanczos, Nearest; got 'ESRGAN"):
        check(upscaler="ESRGAN_4x")
    with pytest.raises(InvalidRequest, match="hr_scale \\(upscale by\\) must be between 1 and 4, got 0.5"):
        check(scale=0.5)
    with pytest.raises(InvalidRequest, match="the hires fix would end at 2048x2048: .* upscale by less"):
        check(scale=4)
    with pytest.raises(InvalidRequest, match="strength 0.01 with 20 steps leaves no denoising step to run"):
        check(strength=0.01)
    with pytest.raises(InvalidRequest, match="hires steps\\) must be between 0 and 150"):
        check(second_pass_steps=500)


def test_latent_upscaling_covers_the_size_and_crops_the_middle() -> None:
    latents = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(1, 4, 8, 8)
    doubled = hires.upscale_latents(latents, (128, 128), "Latent (nearest)", vae_scale_factor=8)
    assert doubled.shape == (1, 4, 16, 16)
    assert torch.equal(doubled[..., ::2, ::2], latents), "nearest: every latent pixel becomes a 2x2 block"
    wide = hires.upscale_latents(latents, (192, 96), "Latent", vae_scale_factor=8)
    assert wide.shape == (1, 4, 12, 24), "another aspect: covered, then the middle kept"
    for upscaler in hires.LATENT_UPSCALERS:
        assert hires.upscale_latents(latents.half(), (96, 96), upscaler, 8).dtype == torch.float16


def test_the_second_pass_redraws_the_first_at_the_larger_size(studio: Studio) -> None:
    result = studio.service.txt2img(hires_request(batch_size=2))
    assert [item.image.size for item in result.images] == [(128, 128), (128, 128)]
    fields = parse_parameters(result.images[0].parameters).fields
    assert fields["Size"] == "64x64", "A1111 writes the first pass's size"
    assert (fields["Hires upscale"], fields["Hires upscaler"], fields["Denoising strength"]) == ("2", "Latent", "0.7")
    assert "Hires steps" not in fields, "as A1111: only when it is not 0"
    again = studio.service.txt2img(hires_request(seed=12))
    alone = np.abs(pixels(again.images[0].image) - pixels(result.images[1].image)).max()
    assert alone <= 1, "image i alone (within a level: batched arithmetic, as plain text to image at 128x128)"
    saved = read_metadata(Image.open(result.images[0].path))
    assert saved.record["request"]["enable_hr"] is True and saved.parameters_text == result.images[0].parameters


def test_the_second_pass_starts_from_what_text_to_image_makes(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass is text to image's own run (same seed, same latents); the second pass gets those latents
    upscaled, and what it returns is what is decoded. (The micro model's test shows the picture surviving.)"""
    seen: dict[str, list[torch.Tensor]] = {"decoded": [], "upscaled": []}
    decode, upscale = service_module.decode_latents, service_module.upscale_latents

    def spy_decode(vae: object, processor: object, latents: torch.Tensor, **kwargs: object) -> object:
        seen["decoded"].append(latents.clone())
        return decode(vae, processor, latents, **kwargs)  # type: ignore[arg-type]

    def spy_upscale(latents: torch.Tensor, *args: object) -> torch.Tensor:
        seen["upscaled"].append(latents.clone())
        return upscale(latents, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "decode_latents", spy_decode)
    monkeypatch.setattr(service_module, "upscale_latents", spy_upscale)
    studio.service.txt2img(Txt2ImgRequest(prompt="a red house", seed=11, **SMALL))
    studio.service.txt2img(hires_request())
    plain, final = seen["decoded"]
    (first,) = seen["upscaled"]
    assert torch.equal(first, plain), "the first pass is text to image's run"
    assert final.shape[-2:] == (plain.shape[-2] * 2, plain.shape[-1] * 2), "the second pass's latents are decoded"


def test_progress_counts_both_passes_and_stop_works_in_the_second(studio: Studio) -> None:
    steps: list[tuple[int, int]] = []
    result = studio.service.txt2img(
        hires_request(hr_second_pass_steps=5, denoising_strength=0.6),
        progress=lambda done, total: steps.append((done, total)),
    )
    assert steps == [(i, 7) for i in range(1, 8)], "4 steps, then 3 of 5 (strength 0.6)"
    assert parse_parameters(result.images[0].parameters).fields["Hires steps"] == "5"

    cancel = threading.Event()

    def stop_in_the_second_pass(done: int, total: int) -> None:
        if done == 5:
            cancel.set()

    outputs = studio.settings.outputs or Path("/nonexistent")
    before = sorted(outputs.rglob("*.png"))
    with pytest.raises(Cancelled, match="Stopped"):
        studio.service.txt2img(hires_request(hr_second_pass_steps=5), progress=stop_in_the_second_pass, cancel=cancel)
    assert sorted(outputs.rglob("*.png")) == before, "nothing was saved"


def test_resize_to_a_size_of_another_aspect(studio: Studio) -> None:
    result = studio.service.txt2img(hires_request(hr_resize_x=128, hr_resize_y=64, hr_upscaler="Nearest"))
    assert result.images[0].image.size == (128, 64)
    fields = parse_parameters(result.images[0].parameters).fields
    assert fields["Hires resize"] == "128x64" and "Hires upscale" not in fields
    with pytest.raises(InvalidRequest, match="enable_hr \\(hires fix\\) must be true or false"):
        studio.service.txt2img(hires_request(enable_hr="yes"))


def test_the_second_pass_may_have_a_sampler_of_its_own(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """A1111's "Hires sampler": the second pass's scheduler is that sampler's; the first pass keeps its own."""
    schedulers: list[str] = []
    derive = studio.manager.image_to_image_of

    def spy(job: object, sampler: str, seeds: object, *schedule: str) -> object:
        pipe = derive(job, sampler, seeds, *schedule)  # type: ignore[arg-type]
        schedulers.append(type(pipe.scheduler).__name__)
        return pipe

    monkeypatch.setattr(studio.manager, "image_to_image_of", spy)
    same = studio.service.txt2img(hires_request(sampler="Euler"))
    other = studio.service.txt2img(hires_request(sampler="Euler", hr_sampler_name="DDIM"))
    assert schedulers == ["EulerDiscreteScheduler", "DDIMScheduler"]
    fields = parse_parameters(other.images[0].parameters).fields
    assert (fields["Sampler"], fields["Hires sampler"]) == ("Euler", "DDIM")
    assert "Hires sampler" not in same.images[0].parameters
    assert studio.service.txt2img(hires_request(hr_sampler_name="Use same sampler")).request.hr_sampler_name == ""
    with pytest.raises(InvalidRequest, match="hr_sampler_name \\(hires sampler\\) must be 'Use same sampler' or one"):
        studio.service.txt2img(hires_request(hr_sampler_name="Nope"))
    sent = settings_from_metadata(read_metadata(other.images[0].image), max_steps=150, max_side=2048)
    assert sent is not None and sent.hires is not None and sent.hires.sampler == "DDIM"


def test_the_second_pass_may_have_prompts_of_its_own(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """A1111's hires prompts: the second pass reads them (LoRA tags taken out), the first pass is untouched, the
    same text as the prompt means no prompt of its own, and the text says them as A1111 writes them."""
    first_passes: list[torch.Tensor] = []
    encoded: list[tuple[str, str]] = []
    upscale, derive = service_module.upscale_latents, studio.manager.image_to_image_of

    def spy_upscale(latents: torch.Tensor, *args: object) -> torch.Tensor:
        first_passes.append(latents.clone())
        return upscale(latents, *args)  # type: ignore[arg-type]

    def spy_derive(job: object, sampler: str, seeds: object, *schedule: str) -> object:
        pipe = derive(job, sampler, seeds, *schedule)  # type: ignore[arg-type]
        encode = type(pipe).encode_prompt

        def spy_encode(*args: object, **kwargs: object) -> object:
            called = inspect.signature(encode).bind(pipe, *args, **kwargs).arguments
            encoded.append((called["prompt"], called.get("negative_prompt") or ""))
            return encode(pipe, *args, **kwargs)

        monkeypatch.setattr(pipe, "encode_prompt", spy_encode)
        return pipe

    monkeypatch.setattr(service_module, "upscale_latents", spy_upscale)
    monkeypatch.setattr(studio.manager, "image_to_image_of", spy_derive)
    plain = studio.service.txt2img(hires_request(negative_prompt="fog"))
    same = studio.service.txt2img(hires_request(negative_prompt="fog", hr_prompt="a red house", hr_negative_prompt=""))
    own = studio.service.txt2img(
        hires_request(negative_prompt="fog", hr_prompt="a blue boat, at dusk", hr_negative_prompt="blur")
    )
    assert encoded == [("a red house", "fog"), ("a red house", "fog"), ("a blue boat, at dusk", "blur")]
    assert torch.equal(first_passes[0], first_passes[2]), "the first pass draws the prompt's picture"
    assert np.array_equal(pixels(plain.images[0].image), pixels(same.images[0].image))
    assert not np.array_equal(pixels(plain.images[0].image), pixels(own.images[0].image))
    assert same.request.hr_prompt == "" and "Hires prompt" not in same.images[0].parameters
    fields = parse_parameters(own.images[0].parameters).fields
    assert (fields["Hires prompt"], fields["Hires negative prompt"]) == ("a blue boat, at dusk", "blur")
    assert 'Hires prompt: "a blue boat, at dusk"' in own.images[0].parameters, "quoted: it holds a comma"
    sent = settings_from_metadata(read_metadata(own.images[0].image), max_steps=150, max_side=2048)
    assert sent is not None and sent.hires is not None
    assert (sent.hires.prompt, sent.hires.negative_prompt) == ("a blue boat, at dusk", "blur")


def test_hires_prompts_with_clip_skip_and_lora_tags(studio: Studio) -> None:
    """With clip skip the studio encodes the prompts itself: the hires prompt is encoded too. LoRAs apply to the
    whole job, so a hires prompt may repeat the prompt's tags (they are taken out) but not change them."""
    skipped = studio.service.txt2img(hires_request(clip_skip=2)).images[0].image
    skipped_own = studio.service.txt2img(hires_request(clip_skip=2, hr_prompt="a blue boat")).images[0].image
    assert not np.array_equal(pixels(skipped), pixels(skipped_own))
    with pytest.raises(InvalidRequest, match="the hires prompt's LoRA tags differ from the prompt's"):
        studio.service.txt2img(hires_request(hr_prompt="a blue boat <lora:pastel:0.5>"))
    second = check(prompts=("a house <lora:x:0.5>", ""), second_pass_prompts=("a boat <lora:x:0.5>", None))
    assert (second.prompt, second.negative_prompt) == ("a boat <lora:x:0.5>", None)
    assert service_module.hires_prompts(second) == {"prompt": "a boat"}
    with pytest.raises(InvalidRequest, match="hr_negative_prompt must be text"):
        check(second_pass_prompts=("", 3))


def test_sdxl_takes_the_hires_fix_too(tmp_path: Path) -> None:
    studio = build_studio(make_settings(save_tiny_sdxl_model(tmp_path / "sdxl"), None))
    result = studio.service.txt2img(hires_request(hr_scale=1.5, num_inference_steps=3))
    assert result.images[0].image.size == (96, 96)


def test_png_info_reads_the_hires_fix_back(studio: Studio) -> None:
    made = studio.service.txt2img(hires_request(hr_scale=1.5, hr_second_pass_steps=3, denoising_strength=0.55))
    ours = settings_from_metadata(read_metadata(made.images[0].image), max_steps=150, max_side=2048)
    assert ours is not None and ours.hires == SentHires("Latent", 1.5, 3, 0.55)
    assert (ours.width, ours.height) == (64, 64), "the first pass's size goes to the size sliders"

    a1111 = Image.new("RGB", (64, 64))
    text = (
        "a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.45, "
        "Hires upscale: 2.5, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+"
    )
    a1111.info["parameters"] = text
    sent = settings_from_metadata(read_metadata(a1111), max_steps=150, max_side=2048)
    assert sent is not None and sent.hires == SentHires("Lanczos", 2.5, 12, 0.45)
    assert any("R-ESRGAN 4x+" in note and "Lanczos" in note for note in sent.notes)
    resized = studio.service.txt2img(hires_request(hr_resize_x=96)).images[0].image
    sent_resized = settings_from_metadata(read_metadata(resized), max_steps=150, max_side=2048)
    assert sent_resized is not None and sent_resized.hires is not None and sent_resized.hires.scale == 1.5
    plain = studio.service.txt2img(Txt2ImgRequest(prompt="a pear", seed=1, **SMALL)).images[0].image
    unfixed = settings_from_metadata(read_metadata(plain), max_steps=150, max_side=2048)
    assert unfixed is not None and unfixed.hires is None


def test_zerogpu_asks_for_the_second_pass_too() -> None:
    plain = {"steps": 25, "width": 512, "height": 512, "batch_size": 1}
    second = estimate_seconds(steps=25, width=1024, height=1024, strength=0.7) - STARTUP_SECONDS
    assert generation_seconds({**plain, "enable_hr": True, "hr_scale": 2.0}) == generation_seconds(plain) + second
