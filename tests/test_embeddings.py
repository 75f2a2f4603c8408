"""Textual inversion embeddings (A1111's): files in --embeddings-dir, named in prompts by file name.

The proof that an embedding is read as its vectors: an embedding made of the tiny text encoder's own vectors for
"red house" draws exactly what the words "red house" draw, through diffusers' prompt path and the studio's own
(clip skip), in the prompt and the negative prompt. Files made for another model, or unreadable, are skipped.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from studio.api import build_api
from studio.composition import Studio, build_studio
from studio.embeddings import embedding_files, insert_embedding, short_hash
from studio.metadata import parse_parameters
from studio.requests import Txt2ImgRequest
from tests.conftest import SMALL, make_settings
from tests.tiny_model import save_tiny_sdxl_model


def word_vectors(encoder: torch.nn.Module, tokenizer: object, words: str) -> torch.Tensor:
    ids = tokenizer(words, add_special_tokens=False).input_ids  # type: ignore[operator]
    return encoder.get_input_embeddings().weight[ids].detach().clone()


@pytest.fixture
def embedded(tiny_model: Path, tmp_path: Path) -> Studio:
    """A studio over the tiny model whose embeddings folder holds one file of each kind."""
    probe = build_studio(make_settings(tiny_model, None)).manager.current().pipeline
    folder = tmp_path / "embeddings"
    folder.mkdir()
    red_house = word_vectors(probe.text_encoder, probe.tokenizer, "red house")
    save_file({"emb_params": red_house}, str(folder / "redhouse.safetensors"))  # A1111's safetensors
    blue = word_vectors(probe.text_encoder, probe.tokenizer, "blue")
    torch.save({"string_to_param": {"*": blue}, "name": "blue-ti", "step": 500}, folder / "bluish.pt")  # A1111's .pt
    save_file({"emb_params": torch.randn(2, 768)}, str(folder / "sd15-only.safetensors"))
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    (folder / "notes.txt").write_text("not an embedding")
    settings = make_settings(tiny_model, tmp_path / "outputs", embeddings_dir=folder)
    return build_studio(settings)


def draw(studio: Studio, prompt: str, **changes: object) -> tuple[np.ndarray, str]:
    made = studio.service.txt2img(Txt2ImgRequest(prompt=prompt, seed=7, **{**SMALL, **changes}))  # type: ignore[arg-type]
    return np.asarray(made.images[0].image, dtype=np.float64), made.images[0].parameters


@pytest.mark.parametrize("clip_skip", [1, 2], ids=["diffusers-encoding", "studio-encoding"])
def test_an_embedding_draws_what_its_vectors_are(embedded: Studio, clip_skip: int) -> None:
    named, parameters = draw(embedded, "a redhouse by the sea", clip_skip=clip_skip)
    words, plain_parameters = draw(embedded, "a red house by the sea", clip_skip=clip_skip)
    assert np.array_equal(named, words), "two vectors, read in place of the name"
    other, _ = draw(embedded, "a blue house by the sea", clip_skip=clip_skip)
    assert not np.array_equal(named, other)
    path = embedded.settings.embeddings_folder / "redhouse.safetensors"
    assert parse_parameters(parameters).fields["TI hashes"] == f"redhouse: {short_hash(path)}"
    assert "TI hashes" not in plain_parameters, "recorded only when named"


def test_an_embedding_in_a_weighted_or_long_prompt(embedded: Studio) -> None:
    """Read the studio's way (emphasis, more than 75 tokens), a name still stands for its vectors."""
    named, _ = draw(embedded, "a (redhouse:1.3) by the sea")
    words, _ = draw(embedded, "a (red house:1.3) by the sea")
    assert np.array_equal(named, words)
    long = "a red house on the sea " * 14
    assert np.array_equal(draw(embedded, long + "redhouse")[0], draw(embedded, long + "red house")[0])


def test_a1111_pt_files_and_negative_prompts(embedded: Studio) -> None:
    named, parameters = draw(embedded, "a house", negative_prompt="bluish, blurry")
    words, _ = draw(embedded, "a house", negative_prompt="blue, blurry")
    assert np.array_equal(named, words)
    assert "bluish: " in parse_parameters(parameters).fields["TI hashes"]


def test_a_name_inside_a_word_is_the_word(embedded: Studio, tiny_model: Path) -> None:
    """As A1111: ``bluish`` names the embedding, ``bluishness`` does not (diffusers adds the names as tokens that
    would be split out of any word holding them)."""
    tokenizer = embedded.manager.current().pipeline.tokenizer
    assert "bluish" in tokenizer.tokenize("a bluish, house") and "bluish" not in tokenizer.tokenize("a bluishness")
    assert "redhouse_1" not in tokenizer.tokenize("redhouse_1x"), "every vector's token"
    without = build_studio(make_settings(tiny_model, None))
    inside, parameters = draw(embedded, "a bluishness house")
    assert np.array_equal(inside, draw(without, "a bluishness house")[0]), "encoded as without the embedding"
    assert "TI hashes" not in parameters


def test_files_for_another_model_or_unreadable_are_skipped_with_why(embedded: Studio) -> None:
    embeddings = embedded.manager.current().embeddings
    assert sorted(embeddings.loaded) == ["bluish", "redhouse"]
    assert embeddings.loaded["redhouse"].vectors == 2
    assert (
        "made for another model family (vectors 768 wide; this model's text encoders take 32)"
        in (embeddings.skipped["sd15-only"])
    )
    assert embeddings.skipped["broken"].startswith("cannot be read")
    assert [file.name for file in embedding_files(embedded.settings.embeddings_folder)] == [
        "bluish", "broken", "redhouse", "sd15-only",
    ]  # fmt: skip


def test_the_a1111_api_lists_them(embedded: Studio) -> None:
    app = FastAPI()
    app.include_router(build_api(embedded))
    listed = TestClient(app).get("/sdapi/v1/embeddings").json()
    assert listed["loaded"]["redhouse"]["vectors"] == 2 and listed["loaded"]["redhouse"]["shape"] == 32
    assert "another model family" in listed["skipped"]["sd15-only"]["reason"]


def test_files_added_later_are_read_without_reloading_the_model(embedded: Studio) -> None:
    """A1111's refresh: 🔄 in the header and ``POST /sdapi/v1/refresh-embeddings`` give the loaded model the files
    put in the folder since it loaded (the same text encoder: no reload), and retry the ones skipped."""
    app = FastAPI()
    app.include_router(build_api(embedded))
    client = TestClient(app)
    pipe = embedded.manager.current().pipeline
    folder = embedded.settings.embeddings_folder
    save_file(
        {"emb_params": word_vectors(pipe.text_encoder, pipe.tokenizer, "house")}, str(folder / "abode.safetensors")
    )
    save_file(
        {"emb_params": word_vectors(pipe.text_encoder, pipe.tokenizer, "sea")}, str(folder / "broken.safetensors")
    )
    assert "abode" not in client.get("/sdapi/v1/embeddings").json()["loaded"], "not before the refresh"
    assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
    listed = client.get("/sdapi/v1/embeddings").json()
    assert sorted(listed["loaded"]) == ["abode", "bluish", "broken", "redhouse"], "new, and the mended one"
    assert list(listed["skipped"]) == ["sd15-only"]
    assert embedded.manager.current().pipeline is pipe, "the same model, not reloaded"
    assert embedded.system.embedding_names() == ["abode", "bluish", "broken", "redhouse"]
    named, parameters = draw(embedded, "a red abode by the broken")
    assert np.array_equal(named, draw(embedded, "a red house by the sea")[0])
    assert "abode: " in parse_parameters(parameters).fields["TI hashes"]


def test_the_picker_adds_a_name_once_as_a_word_of_its_own() -> None:
    assert insert_embedding("a castle", "bluish") == "a castle bluish"
    assert insert_embedding("", "bluish") == "bluish"
    assert insert_embedding("a bluish castle", "bluish") == "a bluish castle", "named already"
    assert insert_embedding("a bluishness", "bluish") == "a bluishness bluish", "inside a word is not naming it"


def test_sdxl_embeddings_go_into_both_text_encoders(tmp_path: Path) -> None:
    model = save_tiny_sdxl_model(tmp_path / "sdxl")
    probe = build_studio(make_settings(model, None)).manager.current().pipeline
    folder = tmp_path / "embeddings"
    folder.mkdir()
    clip_l = word_vectors(probe.text_encoder, probe.tokenizer, "red house")
    clip_g = word_vectors(probe.text_encoder_2, probe.tokenizer_2, "red house")
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(folder / "redhouse.safetensors"))
    save_file({"emb_params": torch.randn(1, clip_l.shape[1])}, str(folder / "one-encoder.safetensors"))
    studio = build_studio(make_settings(model, None, embeddings_dir=folder))
    named, _ = draw(studio, "a redhouse")
    words, _ = draw(studio, "a red house")
    assert np.array_equal(named, words)
    assert "another model family" in studio.manager.current().embeddings.skipped["one-encoder"]
