"""A1111's prompt editing ([from:to:when], [to:when], [from::when]) and alternation ([a|b]).

The proofs: each step's text is A1111's; the pipeline is handed the next text's embeddings after the right step
(a spy on the encoding sees the texts in order); never switching draws the first text's picture, switching at once
the second's, and halfway another picture, so the switched embeddings reach the model.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio import prompt_encoding
from studio.composition import Studio, build_studio
from studio.prompt_schedule import changes_over_steps, texts_by_step
from studio.requests import CompareRequest, Img2ImgRequest, Txt2ImgRequest
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model


@pytest.mark.parametrize(
    ("prompt", "runs"),
    [
        ("a [dog:cat:0.5] in snow", [(2, "a dog in snow"), (4, "a cat in snow")]),
        ("a [dog:cat:3] in snow", [(3, "a dog in snow"), (4, "a cat in snow")]),  # a step number
        ("[dog|cat] x", [(1, "dog x"), (2, "cat x"), (3, "dog x"), (4, "cat x")]),
        ("[dog:3]", [(3, ""), (4, "dog")]),  # added after step 3
        ("[dog::2]", [(2, "dog"), (4, "")]),  # taken away after step 2
        ("(a [dog:cat:2]:1.2)", [(2, "(a dog:1.2)"), (4, "(a cat:1.2)")]),  # emphasis around it stays
        ("[a [b|c]:d:0.5]", [(1, "a b"), (2, "a c"), (4, "d")]),  # nested
        ("[[a|b]]", [(1, "[a]"), (2, "[b]"), (3, "[a]"), (4, "[b]")]),  # emphasis around an alternation
        ("a [red] house", [(4, "a [red] house")]),  # emphasis only
        (r"\[x:y:1\]", [(4, r"\[x:y:1\]")]),  # escaped
        ("[x:y:z]", [(4, "[x:y:z]")]),  # no number: emphasis
        ("[unclosed", [(4, "[unclosed")]),
    ],
)
def test_each_steps_text_is_a1111s(prompt: str, runs: list[tuple[int, str]]) -> None:
    assert texts_by_step(prompt, 4) == runs
    assert changes_over_steps(prompt) == (len(runs) > 1)


def distance(first: object, second: object) -> float:
    def pixels(made: object) -> np.ndarray:
        return np.asarray(made.images[0].image, dtype=np.float64)  # type: ignore[attr-defined]

    return float(np.abs(pixels(first) - pixels(second)).mean())


def draw(studio: Studio, prompt: str, **changes: object) -> object:
    request = Txt2ImgRequest(prompt=prompt, seed=5, sampler="Euler", **SMALL)
    return studio.service.txt2img(replace(request, **changes))  # type: ignore[arg-type]


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The prompt texts the studio encodes, call by call."""
    calls: list[list[str]] = []
    encode = prompt_encoding.encode_weighted

    def spy(pipe: object, prompts: list[str], *args: object) -> object:
        calls.append(list(prompts))
        return encode(pipe, prompts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(prompt_encoding, "encode_weighted", spy)
    return calls


def test_the_picture_switches_prompts_at_the_step_asked(studio: Studio, encoded: list[list[str]]) -> None:
    """(The tiny model reads text weakly: "red" to "blue" moves its pixels by about 1.5 levels.)"""
    halfway = draw(studio, "a [red:blue:0.5] house")
    assert encoded == [["a red house"], ["a blue house"]], "the first text, then the second after step 2 of 4"
    red, blue = draw(studio, "a red house"), draw(studio, "a blue house")
    assert distance(draw(studio, "a [red:blue:9] house"), red) < 0.05, "never switched: the first text's picture"
    assert distance(draw(studio, "a [red:blue:0] house"), blue) < 0.05, "switched at once: the second's"
    # The tiny model settles its picture in the first steps: switched after step 1 of 4, it is between the two.
    early = draw(studio, "a [red:blue:1] house")
    assert distance(early, red) > 0.1 and distance(early, blue) > 0.5, "the switched embeddings reach the model"
    assert halfway.images[0].parameters.startswith("a [red:blue:0.5] house\n")  # type: ignore[attr-defined]


def test_alternation_switches_every_step_and_works_without_cfg(studio: Studio, encoded: list[list[str]]) -> None:
    draw(studio, "a [red|blue] house", guidance_scale=1)
    assert encoded == [["a red house"], ["a blue house"], ["a red house"], ["a blue house"]]
    batch = draw(studio, "a [red|blue] house", batch_size=2)
    assert len(batch.images) == 2  # type: ignore[attr-defined]


def test_image_to_image_and_the_hires_pass_count_their_own_steps(studio: Studio, encoded: list[list[str]]) -> None:
    picture = Image.new("RGB", (64, 64), (120, 60, 30))
    request = Img2ImgRequest(
        picture, "a [red:blue:0.5] house", seed=1, strength=0.5, **{**SMALL, "num_inference_steps": 8}
    )
    studio.service.img2img(request)
    assert encoded == [["a red house"], ["a blue house"]], "halfway through the 4 steps it runs"
    encoded.clear()
    draw(studio, "a [red:blue:0.5] house", enable_hr=True, hr_scale=1.5, denoising_strength=0.5)
    assert encoded == [["a red house"], ["a blue house"], ["a red house"], ["a blue house"]], "each pass its own"


def test_compare_cells_each_follow_their_schedule(studio: Studio, encoded: list[list[str]]) -> None:
    studio.service.compare(CompareRequest(prompts=("a [red:blue:0.5] house", "a green tree"), seed=2, **SMALL))
    assert encoded == [["a red house", "a green tree"], ["a blue house", "a green tree"]]


def test_sdxl_switches_its_pooled_embeddings_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The UNet gets the second text's embeddings and pooled embeddings from step 3 of 4, the very ones a plain
    run of that text gets. (The tiny SDXL settles its picture too early for pixels to show a late switch.)"""
    studio = build_studio(make_settings(save_tiny_sdxl_model(tmp_path / "sdxl"), None))
    unet = studio.manager.current().pipeline.unet
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = unet.forward

    def spy(
        sample: object, timestep: object, encoder_hidden_states: torch.Tensor, *args: object, **kwargs: object
    ) -> object:
        seen.append((encoder_hidden_states.clone(), kwargs["added_cond_kwargs"]["text_embeds"].clone()))  # type: ignore[index]
        return forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    draw(studio, "a red house")
    draw(studio, "a blue house")
    draw(studio, "a [red:blue:0.5] house")
    red, blue, switched = seen[0], seen[4], seen[8:]
    for step, (hidden, pooled) in enumerate(switched, start=1):
        expected = red if step <= 2 else blue
        assert torch.allclose(hidden, expected[0], atol=1e-5) and torch.allclose(pooled, expected[1], atol=1e-5), step
    assert not torch.allclose(red[1], blue[1]), "the pooled embeddings differ, so the check above means something"
