"""Textual inversion embeddings, as A1111 users keep them: files in ``--embeddings-dir``, named in a prompt by their
file name (``EasyNegative`` in a negative prompt), recorded as A1111's ``TI hashes`` field.

Each embedding is one or more word vectors for the text encoder. They are added to the model's tokenizer and text
encoder when the model loads, through diffusers' ``load_textual_inversion`` (a name of several vectors becomes as
many tokens, which diffusers' prompt encoding expands). The tokens match whole words only, as A1111's names do:
``bluish`` is the embedding, ``bluishness`` stays a word. So a prompt without the name is encoded exactly as
before, and loading them for everyone changes no one's pictures but theirs who name them.

Files: A1111's ``.safetensors`` (``emb_params``), its ``.pt`` (``string_to_param``, read with torch's safe
tensor-only loader, so no code can run), diffusers' one-key files, and SDXL's (``clip_l`` and ``clip_g``, one for
each text encoder). An embedding made for another model family (its vectors' width is not the text encoder's) is
skipped, as A1111 skips it, and listed with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AddedToken

from studio.loras import SHORT_HASH_DIGITS

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


@dataclass(frozen=True)
class EmbeddingFile:
    name: str
    path: Path


@dataclass(frozen=True)
class LoadedEmbedding:
    """An embedding the loaded model's prompts may name: its file, its vector count and A1111's short hash."""

    file: EmbeddingFile
    vectors: int
    width: int
    """The width of its vectors (768 for SD 1.x; for SDXL, its first text encoder's)."""
    short_hash: str


@dataclass(frozen=True)
class ModelEmbeddings:
    """What the loaded model took from ``--embeddings-dir``: the embeddings by name, and the files skipped (why)."""

    loaded: Mapping[str, LoadedEmbedding] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.loaded)

    def adding(self, more: ModelEmbeddings) -> ModelEmbeddings:
        """These and ``more`` (read since), whose skipped files are the ones skipped now."""
        return ModelEmbeddings({**self.loaded, **more.loaded}, dict(more.skipped))

    def used_in(self, *texts: str) -> list[LoadedEmbedding]:
        """The embeddings named in ``texts``, as whole words, in name order."""
        return [
            embedding
            for name, embedding in sorted(self.loaded.items())
            if any(_word(name).search(text) for text in texts if text)
        ]


def _word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def insert_embedding(prompt: str, name: str) -> str:
    """``prompt`` with the embedding ``name`` added at the end as a word of its own, as A1111's cards add it (left
    as it is when it names it already)."""
    if _word(name).search(prompt):
        return prompt
    return f"{prompt.rstrip()} {name}" if prompt.strip() else name


def ti_hashes_field(used: Iterable[LoadedEmbedding]) -> str:
    """A1111's ``TI hashes`` value: ``name: hash`` pairs, comma-separated."""
    return ", ".join(f"{embedding.file.name}: {embedding.short_hash}" for embedding in used)


def embedding_files(folder: Path | None) -> list[EmbeddingFile]:
    """The embedding files in ``folder`` (not its subfolders), by name; none when it does not exist."""
    if folder is None or not folder.is_dir():
        return []
    files = [path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in EMBEDDING_SUFFIXES]
    return [EmbeddingFile(path.stem, path) for path in sorted(files, key=lambda path: path.stem.lower())]


def read_vectors(path: Path) -> dict[str, torch.Tensor]:
    """An embedding file's vectors: ``{"vectors": ...}`` for one text encoder, ``{"clip_l": ..., "clip_g": ...}``
    for SDXL's two. Each tensor is (vectors, width). Raises ``ValueError`` for a file that holds none."""
    if path.suffix.lower() == ".safetensors":
        data: Mapping[str, object] = load_file(str(path))
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    if "clip_l" in data and "clip_g" in data:
        vectors = {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    elif "emb_params" in data:
        vectors = {"vectors": data["emb_params"]}
    elif isinstance(data.get("string_to_param"), Mapping) and "*" in data["string_to_param"]:  # type: ignore[operator]
        vectors = {"vectors": data["string_to_param"]["*"]}  # type: ignore[index]
    elif len(data) == 1:
        vectors = {"vectors": next(iter(data.values()))}
    else:
        raise ValueError("no embedding vectors in it (A1111 emb_params or string_to_param, or SDXL clip_l/clip_g)")
    for key, tensor in vectors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() not in (1, 2):
            raise ValueError(f"its {key} is not a list of vectors")
        vectors[key] = tensor.detach().float().reshape(-1, tensor.shape[-1])
    return vectors


def short_hash(path: Path) -> str:
    """A1111's short hash of an embedding: the first 12 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:SHORT_HASH_DIGITS]


def _width(encoder: torch.nn.Module) -> int:
    return int(encoder.get_input_embeddings().weight.shape[-1])


def _whole_words_only(tokenizer: object, name: str) -> None:
    """Make the tokens diffusers added for ``name`` (``name``, and ``name_1``... for more vectors) match whole words
    only: added as plain text, a token is split out of any word holding it (``bluish`` out of ``bluishness``)."""
    added = re.compile(rf"{re.escape(name)}(_\d+)?")
    tokens = [token for token in tokenizer.get_added_vocab() if added.fullmatch(token)]  # type: ignore[attr-defined]
    tokenizer.add_tokens([AddedToken(token, single_word=True) for token in tokens])  # type: ignore[attr-defined]


def load_embeddings(pipe: DiffusionPipeline, files: Iterable[EmbeddingFile]) -> ModelEmbeddings:
    """Add each embedding of ``files`` that fits ``pipe``'s text encoders to its tokenizers and text encoders."""
    loaded: dict[str, LoadedEmbedding] = {}
    skipped: dict[str, str] = {}
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    for file in files:
        try:
            vectors = read_vectors(file.path)
        except (OSError, ValueError, RuntimeError, EOFError, SafetensorError, pickle.UnpicklingError) as error:
            skipped[file.name] = f"cannot be read: {error}"
            continue
        parts = [vectors.get("vectors")] if len(encoders) == 1 else [vectors.get("clip_l"), vectors.get("clip_g")]
        widths = [_width(encoder) for _, encoder in encoders]
        if any(part is None for part in parts) or any(
            part.shape[-1] != width
            for part, width in zip(parts, widths, strict=True)  # type: ignore[union-attr]
        ):
            made_for = "/".join(str(tensor.shape[-1]) for tensor in vectors.values())
            skipped[file.name] = (
                f"made for another model family (vectors {made_for} wide; this model's text encoders take "
                f"{'/'.join(map(str, widths))})"
            )
            continue
        if any(file.name in tokenizer.get_vocab() for tokenizer, _ in encoders):
            skipped[file.name] = "its name is already a word of the tokenizer; rename the file"
            continue
        for (tokenizer, encoder), part in zip(encoders, parts, strict=True):
            pipe.load_textual_inversion(part, token=file.name, tokenizer=tokenizer, text_encoder=encoder)
            _whole_words_only(tokenizer, file.name)
        first = parts[0]
        assert first is not None
        loaded[file.name] = LoadedEmbedding(file, int(first.shape[0]), int(first.shape[1]), short_hash(file.path))
    for name, reason in skipped.items():
        log.warning("embedding %s skipped: %s", name, reason)
    return ModelEmbeddings(loaded, skipped)
