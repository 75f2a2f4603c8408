"""Clip skip, counted as A1111 counts it, in every generation task, its metadata, PNG Info and the A1111 API."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from studio import clip_skip
from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.metadata import parse_parameters, read_metadata
from studio.model_manager import Task
from studio.pnginfo import settings_from_metadata
from studio.requests import CompareRequest, Img2ImgRequest, Txt2ImgRequest
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_encoding_no_layer_skipped_is_the_pipelines_own(studio: Studio) -> None:
    """The studio's encoding (diffusers' clip_skip path, which fails with transformers 5.6+ for SD 1.x) gives the
    pipeline's own prompt embeddings when no layer is skipped, and others when one is."""
    with studio.manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        pipe = job.pipeline
        own, _ = pipe.encode_prompt("a red house", pipe._execution_device, 1, False)
        ours = clip_skip.encode(pipe, ["a red house"], 0)
        skipped = clip_skip.encode(pipe, ["a red house"], 1)
    assert torch.allclose(ours, own, atol=1e-6)
    assert not torch.allclose(skipped, own, atol=1e-3)


def test_clip_skip_2_reads_the_layer_before_the_last(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """A1111's clip skip 2 is one layer skipped, for the prompt and the negative prompt alike; 1 is the plain call."""
    asked: list[tuple[list[str], int]] = []
    encode = clip_skip.encode

    def spy(pipe: Any, texts: list[str], skipped: int) -> torch.Tensor:
        asked.append((list(texts), skipped))
        return encode(pipe, texts, skipped)

    monkeypatch.setattr(clip_skip, "encode", spy)
    request = Txt2ImgRequest(prompt="a red house", negative_prompt="fog", seed=3, **SMALL)
    plain = studio.service.txt2img(request).images[0]
    skipped = studio.service.txt2img(replace(request, clip_skip=2)).images[0]
    assert asked == [(["a red house"], 1), (["fog"], 1)]
    assert np.abs(pixels(plain.image) - pixels(skipped.image)).mean() > 1, "another layer, another picture"
    assert "Clip skip" not in parse_parameters(plain.parameters).fields, "A1111 leaves out clip skip 1"
    assert parse_parameters(skipped.parameters).fields["Clip skip"] == "2"
    sent = settings_from_metadata(read_metadata(skipped.image), max_steps=150, max_side=2048)
    assert sent is not None and sent.clip_skip == 2
    sent_plain = settings_from_metadata(read_metadata(plain.image), max_steps=150, max_side=2048)
    assert sent_plain is not None and sent_plain.clip_skip == 1
    fixed = studio.service.txt2img(replace(request, clip_skip=2, enable_hr=True, hr_scale=1.5)).images[0]
    assert fixed.image.size == (96, 96) and len(asked) == 4, "the hires pass reuses the same embeddings"


def test_clip_skip_in_the_other_tasks_and_its_checks(studio: Studio) -> None:
    picture = Image.new("RGB", (64, 64), (200, 80, 40))
    made = studio.service.img2img(Img2ImgRequest(picture, "a bowl", seed=2, clip_skip=2, **SMALL))
    assert parse_parameters(made.images[0].parameters).fields["Clip skip"] == "2"
    cells = studio.service.compare(CompareRequest(prompts=("a bowl", "a cup"), seed=2, clip_skip=2, **SMALL))
    assert all(parse_parameters(cell.image.parameters).fields["Clip skip"] == "2" for cell in cells.cells)
    with pytest.raises(InvalidRequest, match="clip_skip must be between 1 and 12, got 13"):
        studio.service.txt2img(Txt2ImgRequest(prompt="x", clip_skip=13, **SMALL))
    layers = studio.manager.current().pipeline.text_encoder.config.num_hidden_layers
    with pytest.raises(InvalidRequest, match=f"text encoder, which has {layers} layers: choose 1 to {layers}"):
        studio.service.txt2img(Txt2ImgRequest(prompt="x", clip_skip=layers + 1, **SMALL))
    assert studio.service.txt2img(Txt2ImgRequest(prompt="x", clip_skip=layers, **SMALL)).images
    a1111 = Image.new("RGB", (64, 64))
    a1111.info["parameters"] = "a girl\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Clip skip: 2"
    sent = settings_from_metadata(read_metadata(a1111), max_steps=150, max_side=2048)
    assert sent is not None and sent.clip_skip == 2


def test_sdxl_takes_clip_skip_through_diffusers(tmp_path: Path) -> None:
    """SDXL keeps diffusers' own clip_skip (its path works with transformers 5, and reads both text encoders)."""
    studio = build_studio(make_settings(save_tiny_sdxl_model(tmp_path / "sdxl"), None))
    request = Txt2ImgRequest(prompt="a red house", seed=3, **SMALL)
    plain = studio.service.txt2img(request).images[0]
    skipped = studio.service.txt2img(replace(request, clip_skip=2)).images[0]
    assert np.abs(pixels(plain.image) - pixels(skipped.image)).mean() > 1
    assert parse_parameters(skipped.parameters).fields["Clip skip"] == "2"
