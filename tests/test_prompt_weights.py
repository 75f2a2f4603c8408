"""A1111's prompt syntax (emphasis, BREAK) and prompts longer than CLIP's 75 tokens.

The proofs: the syntax is taken apart as A1111 takes it; a plain prompt read the studio's way is exactly diffusers'
encoding (so only prompts that use the syntax change); a weight scales its words' embeddings against the others
and keeps the prompt's mean; words past the 75th token change the picture, where diffusers cuts them off.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio import prompt_encoding
from studio.composition import Studio, build_studio
from studio.model_manager import Task
from studio.prompt_encoding import Token, encode_weighted, into_chunks, prompt_arguments, reweighed
from studio.prompt_syntax import Piece, parse_prompt, plain_text
from studio.requests import CompareRequest, Txt2ImgRequest
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model

LONG = "a red house on the sea " * 14  # 84 tokens: more than one chunk of 75


def pieces(prompt: str) -> list[tuple[str, float, bool]]:
    return [(piece.text, round(piece.weight, 4), piece.is_break) for piece in parse_prompt(prompt)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a red house", [("a red house", 1.0, False)]),
        ("a (red:1.5) house", [("a ", 1.0, False), ("red", 1.5, False), (" house", 1.0, False)]),
        ("((a)) [b] c", [("a", 1.21, False), (" ", 1.0, False), ("b", 0.9091, False), (" c", 1.0, False)]),
        (r"\(x\) y", [("(x) y", 1.0, False)]),
        ("a (b c", [("a ", 1.0, False), ("b c", 1.1, False)]),  # never closed: to the end
        ("x) y] z", [("x) y] z", 1.0, False)]),  # never opened: text
        ("(a [b:2) c]", [("a ", 2.0, False), ("b", 1.8182, False), (" c", 0.9091, False)]),  # kinds close apart
        ("one BREAK two", [("one ", 1.0, False), ("", 1.0, True), (" two", 1.0, False)]),
        ("a: b (c:0.5)", [("a: b ", 1.0, False), ("c", 0.5, False)]),
        ("ABREAK", [("ABREAK", 1.0, False)]),  # a word of its own only
        ("(a:1.2", [("a:1.2", 1.1, False)]),
        ("a (red:1) house", [("a red house", 1.0, False)]),
        ("", [("", 1.0, False)]),
    ],
)
def test_the_syntax_is_taken_apart_as_a1111_does(prompt: str, expected: list[tuple[str, float, bool]]) -> None:
    assert pieces(prompt) == expected


def test_the_words_without_the_syntax() -> None:
    assert plain_text("a (red:1) house, [at] night") == "a red house, at night"
    assert plain_text(r"\(a\) BREAK b") == "(a)  b"
    assert parse_prompt("[x]")[0] == Piece("x", 1 / 1.1)


def test_chunks_end_at_a_comma_near_their_end_or_at_a_break() -> None:
    def ids(chunks: list[list[Token]]) -> list[list[int]]:
        return [[token.id for token in chunk] for chunk in chunks]

    tokens = [Token(i, 1.0) for i in (1, 2, 0, 3, 4, 5, 6)]  # 0 is the comma
    assert ids(into_chunks(tokens, 5, comma=0)) == [[1, 2, 0], [3, 4, 5, 6]], "the phrase after it moves on"
    assert ids(into_chunks(tokens, 5, comma=None)) == [[1, 2, 0, 3, 4], [5, 6]]
    assert ids(into_chunks([*tokens[:2], None, *tokens[3:5]], 5, comma=0)) == [[1, 2], [3, 4]]
    assert ids(into_chunks([], 5, comma=0)) == [[]], "an empty prompt is one empty chunk"
    far = [Token(0, 1.0)] + [Token(i, 1.0) for i in range(1, 30)]
    assert [len(chunk) for chunk in into_chunks(far, 25, comma=0)] == [25, 5], "a comma too far back: cut at 75"


def test_a_plain_prompt_read_the_studios_way_is_diffusers_own(studio: Studio) -> None:
    with studio.manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        pipe = job.pipeline
        own, negative = pipe.encode_prompt("a red house", pipe._execution_device, 1, True, negative_prompt="fog")
        ours = encode_weighted(pipe, ["a red house"], ["fog"], 0)
    assert torch.allclose(ours["prompt_embeds"], own, atol=1e-6)
    assert torch.allclose(ours["negative_prompt_embeds"], negative, atol=1e-6)


def test_a_weight_scales_its_words_and_keeps_the_mean() -> None:
    hidden = torch.arange(1.0, 13.0).reshape(1, 4, 3)  # four tokens of width 3, mean 6.5
    weighted = reweighed(hidden, torch.tensor([1.0, 1.5, 1.0, 1.0]))
    assert float(weighted.mean()) == pytest.approx(6.5), "the chunk keeps its mean"
    ratio = (weighted / hidden)[0, :, 0]
    assert float(ratio[1]) == pytest.approx(1.5 * float(ratio[0])), "token 1: 1.5 times the others"
    centred = hidden - hidden.mean()  # a mean of 0 (no bias in the final layer norm): the weights as they are
    assert torch.equal(reweighed(centred, torch.tensor([1.0, 2.0, 1.0, 1.0]))[0, 1], centred[0, 1] * 2)


def test_the_tiny_models_weighted_word_is_read_stronger(studio: Studio) -> None:
    with studio.manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        pipe = job.pipeline
        plain = encode_weighted(pipe, ["a red house"], [None], 0)["prompt_embeds"]
        weighted = encode_weighted(pipe, ["a (red:1.5) house"], [None], 0)["prompt_embeds"]
    ratio = (weighted / plain)[0, :, 0]
    assert float(ratio[2]) == pytest.approx(1.5 * float(ratio[1]), rel=1e-4), "red: 1.5 times 'a'"
    assert float(ratio[3]) == pytest.approx(float(ratio[1]), rel=1e-4)


def pixels(result: object) -> np.ndarray:
    return np.asarray(result.images[0].image, dtype=np.float64)  # type: ignore[attr-defined]


def draw(studio: Studio, prompt: str, **changes: object) -> object:
    request = Txt2ImgRequest(prompt=prompt, seed=5, sampler="Euler", **SMALL)
    return studio.service.txt2img(replace(request, **changes))  # type: ignore[arg-type]


def test_emphasis_changes_the_picture_and_weight_1_does_not(studio: Studio) -> None:
    """(The tiny model reads text weakly: "red" to "blue" moves its pixels by about 1.5 levels.)"""
    plain = pixels(draw(studio, "a red house"))
    assert np.array_equal(pixels(draw(studio, "a (red:1) house")), plain), "weight 1: diffusers' own encoding"
    assert np.abs(pixels(draw(studio, "a (red:3) house")) - plain).mean() > 0.5
    assert np.abs(pixels(draw(studio, "a (red:0.2) house")) - plain).mean() > 0.05
    negative = pixels(draw(studio, "a red house", negative_prompt="sea"))
    assert np.abs(pixels(draw(studio, "a red house", negative_prompt="(sea:2)")) - negative).mean() > 0.2
    skipped = pixels(draw(studio, "a red house", clip_skip=2))
    assert np.abs(pixels(draw(studio, "a (red:3) house", clip_skip=2)) - skipped).mean() > 0.5


def test_words_past_the_75th_token_count(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers would cut both prompts at the same 75 tokens and draw one picture; read in two chunks, the words
    after them make another. The negative prompt is padded to the prompt's two chunks."""
    shapes: list[tuple[int, ...]] = []
    encode = prompt_encoding.encode_weighted

    def spy(*args: object) -> dict[str, torch.Tensor]:
        embeddings = encode(*args)  # type: ignore[arg-type]
        shapes.extend(tuple(embeddings[key].shape) for key in ("prompt_embeds", "negative_prompt_embeds"))
        return embeddings

    monkeypatch.setattr(prompt_encoding, "encode_weighted", spy)
    green = draw(studio, LONG + "green tree", negative_prompt="fog")
    blue = draw(studio, LONG + "blue sky", negative_prompt="fog")
    assert shapes[:2] == [(1, 154, 32), (1, 154, 32)]
    assert np.abs(pixels(green) - pixels(blue)).mean() > 0.5
    assert green.images[0].parameters.startswith(LONG + "green tree\n")  # type: ignore[attr-defined]
    split = draw(studio, "a red house BREAK blue sky")
    assert shapes[-2:] == [(1, 154, 32), (1, 154, 32)] and split.images  # type: ignore[attr-defined]


def test_compare_batches_prompts_of_different_lengths(studio: Studio) -> None:
    cells = studio.service.compare(CompareRequest(prompts=(LONG + "green", "a (red:1.4) house"), seed=2, **SMALL))
    alone = draw(studio, "a (red:1.4) house", seed=2, sampler=cells.cells[1].image.parameters.split("Sampler: ")[1]
                 .split(",")[0])  # fmt: skip
    assert len(cells.cells) == 2
    difference = np.abs(np.asarray(cells.cells[1].image.image, dtype=np.float64) - pixels(alone)).mean()
    assert difference < 1, "padded with empty chunks beside the long one, it draws as alone"


def test_sdxl_reads_both_encoders_and_its_empty_negative_stays_zeros(tmp_path: Path) -> None:
    studio = build_studio(make_settings(save_tiny_sdxl_model(tmp_path / "sdxl"), None))
    with studio.manager.job(Task.TXT2IMG, "Euler", [1]) as job:
        pipe = job.pipeline
        own = pipe.encode_prompt("a red house", device=pipe._execution_device, do_classifier_free_guidance=True)
        ours = encode_weighted(pipe, ["a red house"], [None], 0)
        long, switch = prompt_arguments(pipe, {"prompt": LONG, "negative_prompt": None, "guidance_scale": 7})
    embeds, negative, pooled, negative_pooled = own
    assert torch.allclose(ours["prompt_embeds"], embeds, atol=1e-5)
    assert torch.allclose(ours["pooled_prompt_embeds"], pooled, atol=1e-5)
    assert torch.equal(ours["negative_prompt_embeds"], negative) and not negative.any(), "zeros, as diffusers'"
    assert torch.equal(ours["negative_pooled_prompt_embeds"], negative_pooled)
    assert long["prompt_embeds"].shape[1] == 154 and "prompt" not in long and switch is None
    plain = pixels(draw(studio, "a red house"))
    assert np.abs(pixels(draw(studio, "a (red:3) house")) - plain).mean() > 0.2  # the tiny SDXL reads text weakly
    assert draw(studio, LONG, negative_prompt="(fog:1.2)").images[0].image.size == (64, 64)  # type: ignore[attr-defined]


def test_the_picture_and_its_parameters_keep_the_syntax(studio: Studio) -> None:
    made = draw(studio, "a (red:1.3) house, [fog]")
    assert made.images[0].parameters.startswith("a (red:1.3) house, [fog]\n")  # type: ignore[attr-defined]
    assert isinstance(made.images[0].image, Image.Image)  # type: ignore[attr-defined]


def test_the_token_count_says_how_many_chunks_a_prompt_takes(studio: Studio) -> None:
    counter = studio.service.tokens
    assert counter.count("a red house") is None, "no model loaded: no count (counting loads none)"
    studio.manager.current()
    assert counter.count("a red house").describe() == "3/75"  # type: ignore[union-attr]
    assert counter.count("a (red:1.5) house <lora:ink:0.5>").describe() == "3/75", "syntax and LoRA tags left out"  # type: ignore[union-attr]
    assert counter.count(LONG).describe() == "84/150"  # type: ignore[union-attr]
    assert counter.count("a red BREAK house").describe() == "3/150"  # type: ignore[union-attr]
    assert counter.count("").describe() == "0/75"  # type: ignore[union-attr]
    assert counter.count("a [red:blue sky:0.5] house").describe() == "4/75", "prompt editing: its longest text"  # type: ignore[union-attr]
