"""The A1111 LoRA syntax, the LoRA folder and the hashes: pure Python, no model."""

import hashlib
import json
from pathlib import Path

import pytest

from studio.errors import InvalidRequest
from studio.loras import (
    AppliedLora,
    LoraFile,
    LoraLibrary,
    LoraSpec,
    insert_lora,
    list_loras,
    lora_hashes_field,
    parse_loras,
    safetensors_data_hash,
    strip_loras,
    with_loras,
)


def write_safetensors(path: Path, data: bytes, metadata: dict[str, str] | None = None) -> Path:
    """A minimal valid .safetensors file: one uint8 tensor holding ``data``."""
    header: dict[str, object] = {"w": {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def test_tags_give_names_and_weights_in_order() -> None:
    prompt = "a castle <lora:ink-style:0.8>, at night <lora:Night Sky> <lora:neg:-0.5>"
    assert parse_loras(prompt) == (LoraSpec("ink-style", 0.8), LoraSpec("Night Sky", 1.0), LoraSpec("neg", -0.5))
    assert parse_loras("no tags at all") == ()


def test_tags_are_taken_out_of_what_the_text_encoder_reads() -> None:
    assert strip_loras("a castle <lora:ink:0.8>, at night <lora:sky>") == "a castle , at night"
    assert strip_loras("<lora:ink:1> a cat\n<lora:x:1>a dog") == "a cat\na dog"
    assert strip_loras("a plain prompt  with spaces") == "a plain prompt  with spaces", "untouched without tags"


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("<lora::0.8>", "names no LoRA"),
        ("<lora:ink:strong>", "must be a number"),
        ("<lora:ink:0.5:0.5>", "more than one weight"),
        ("<lora:ink:50>", "between -10 and 10"),
        ("<lora:ink:0.5> and <lora:ink:1>", "asked for twice"),
    ],
)
def test_malformed_tags_say_how_to_write_them(prompt: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_loras(prompt)


def test_insert_appends_a_tag_or_changes_the_weight_of_one_there() -> None:
    assert insert_lora("", "ink", 0.8) == "<lora:ink:0.8>"
    assert insert_lora("a cat  ", "ink", 1.0) == "a cat <lora:ink:1>"
    assert insert_lora("a cat <lora:ink:0.3>, red", "ink", 0.75) == "a cat <lora:ink:0.75>, red"
    assert insert_lora("a cat <lora:inky:0.3>", "ink", 1) == "a cat <lora:inky:0.3> <lora:ink:1>"


def test_loras_given_apart_from_the_prompt_become_tags_in_it() -> None:
    prompt, specs = with_loras("a cat <lora:a:0.5>", [LoraSpec("b", 0.25)])
    assert prompt == "a cat <lora:a:0.5> <lora:b:0.25>"
    assert specs == (LoraSpec("a", 0.5), LoraSpec("b", 0.25))
    assert with_loras(prompt, specs) == (prompt, specs), "validating again changes nothing"
    with pytest.raises(InvalidRequest, match="must be a list"):
        with_loras("a cat", "b")


def test_the_hash_is_the_sha256_of_the_tensor_data_and_ignores_metadata(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5
    plain = write_safetensors(tmp_path / "a.safetensors", data)
    tagged = write_safetensors(tmp_path / "b.safetensors", data, {"ss_output_name": "renamed", "note": "x" * 100})
    assert plain.read_bytes() != tagged.read_bytes()
    assert safetensors_data_hash(plain) == safetensors_data_hash(tagged) == hashlib.sha256(data).hexdigest()
    other = write_safetensors(tmp_path / "c.safetensors", data[::-1])
    assert safetensors_data_hash(other) != safetensors_data_hash(plain)


def test_lora_hashes_field_is_written_as_a1111_does(tmp_path: Path) -> None:
    files = [LoraFile("ink", tmp_path / "ink.safetensors"), LoraFile("a:b,c", tmp_path / "x.safetensors")]
    applied = [AppliedLora(files[0], 0.8, "0123456789ab"), AppliedLora(files[1], 1.0, "ba9876543210")]
    assert lora_hashes_field(applied) == "ink: 0123456789ab, abc: ba9876543210"


def test_library_lists_safetensors_by_name_and_resolves_them(tmp_path: Path) -> None:
    folder = tmp_path / "lora"
    write_safetensors(folder / "ink.safetensors", b"ink weights")
    write_safetensors(folder / "styles" / "watercolor.safetensors", b"watercolor weights")
    write_safetensors(folder / "styles" / "ink.safetensors", b"hidden by the top-level ink")
    (folder / "notes.txt").write_text("not a LoRA")
    (folder / "old.ckpt").write_bytes(b"pickle")
    assert [f.name for f in list_loras(folder)] == ["ink", "watercolor"]
    assert list_loras(folder)[0].path == folder / "ink.safetensors"
    library = LoraLibrary(folder)
    (ink,) = library.resolve([LoraSpec("ink", 0.6)])
    assert ink.weight == 0.6
    assert ink.short_hash == hashlib.sha256(b"ink weights").hexdigest()[:12]
    assert library.resolve([]) == ()


def test_unknown_lora_names_the_ones_there_are(tmp_path: Path) -> None:
    folder = tmp_path / "lora"
    write_safetensors(folder / "ink.safetensors", b"1")
    write_safetensors(folder / "watercolor.safetensors", b"2")
    with pytest.raises(InvalidRequest) as caught:
        LoraLibrary(folder).resolve([LoraSpec("inc", 1.0)])
    assert str(caught.value) == (
        "Unknown LoRA 'inc'. The LoRAs there are: ink, watercolor. Check the spelling in <lora:inc:...>."
    )
    with pytest.raises(InvalidRequest, match="there are no LoRAs yet.*--lora-dir"):
        LoraLibrary(tmp_path / "empty").resolve([LoraSpec("ink", 1.0)])
