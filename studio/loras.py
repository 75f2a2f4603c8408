"""LoRAs as A1111 users know them: ``<lora:name:weight>`` in the prompt, files in ``--lora-dir``, and the
``Lora hashes`` field of the parameters text.

A tag names a LoRA by its file name without ``.safetensors`` and gives its weight (1 when left out). The tag stays
in the prompt that the metadata records, as A1111 keeps it, so pasting the parameters back reproduces the image;
the text that reaches the text encoder has the tags taken out. Pure Python (no torch): the service parses and checks
tags before any GPU work, and applying the weights is ``studio/lora_weights.py``'s job.

The hash is A1111's: the SHA-256 of the tensor data of the ``.safetensors`` file (the bytes after its JSON header,
as kohya's sd-scripts and the additional-networks extension compute it), cut to its first 12 hex digits.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InvalidRequest

log = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
MAX_LORA_WEIGHT = 10.0
MAX_LORAS_PER_REQUEST = 8
SHORT_HASH_DIGITS = 12
"""A1111 (since 1.5) writes the first 12 hex digits of a LoRA's hash into ``Lora hashes``."""

# A1111's extra-network syntax: <kind:arguments>, here only the lora kind.
_LORA_TAG = re.compile(r"<lora:([^>]*)>")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA a request asks for: its name (the file name without ``.safetensors``) and its weight."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class LoraFile:
    """A LoRA on disk: the name prompts use for it and where it is."""

    name: str
    path: Path


@dataclass(frozen=True)
class AppliedLora:
    """A LoRA a job applies: its file, its weight, and the short hash the metadata records."""

    file: LoraFile
    weight: float
    short_hash: str


def format_weight(weight: float) -> str:
    """A weight as A1111 writes it in a tag: ``1``, ``0.8``, ``-0.35``."""
    return f"{weight:.4f}".rstrip("0").rstrip(".") if weight != int(weight) else str(int(weight))


def lora_tag(name: str, weight: float) -> str:
    return f"<lora:{name}:{format_weight(weight)}>"


def _parse_tag(arguments: str) -> LoraSpec:
    name, sep, weight_text = arguments.partition(":")
    name = name.strip()
    if not name:
        raise InvalidRequest(f"<lora:{arguments}> names no LoRA; write <lora:name:weight>, e.g. <lora:my-style:0.8>")
    if not sep:
        return LoraSpec(name)
    if ":" in weight_text:
        raise InvalidRequest(
            f"<lora:{arguments}> has more than one weight; this studio takes one weight per LoRA: <lora:{name}:0.8>"
        )
    try:
        weight = float(weight_text)
    except ValueError:
        raise InvalidRequest(
            f"the weight of <lora:{arguments}> must be a number, e.g. <lora:{name}:0.8>; got {weight_text!r}"
        ) from None
    if not -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:
        raise InvalidRequest(
            f"the weight of <lora:{arguments}> must be between {-MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}; "
            "0.5-1 is usual"
        )
    return LoraSpec(name, weight)


def parse_loras(prompt: str) -> tuple[LoraSpec, ...]:
    """The LoRAs a prompt's ``<lora:name:weight>`` tags ask for, in order. A name given twice is refused (which
    weight was meant?); a malformed tag is refused with the form it should take."""
    specs = tuple(_parse_tag(match.group(1)) for match in _LORA_TAG.finditer(prompt))
    return check_specs(specs)


def check_specs(specs: Iterable[LoraSpec]) -> tuple[LoraSpec, ...]:
    """LoRA specs checked: each name once, a finite weight in range, at most ``MAX_LORAS_PER_REQUEST``."""
    checked: list[LoraSpec] = []
    for spec in specs:
        if not isinstance(spec, LoraSpec):
            raise InvalidRequest(f"loras must be LoraSpec(name, weight) values, got {type(spec).__name__}")
        if isinstance(spec.weight, bool) or not isinstance(spec.weight, int | float) or spec.weight != spec.weight:
            raise InvalidRequest(f"the weight of LoRA {spec.name!r} must be a number, got {spec.weight!r}")
        if not -MAX_LORA_WEIGHT <= spec.weight <= MAX_LORA_WEIGHT:
            raise InvalidRequest(
                f"the weight of LoRA {spec.name!r} must be between {-MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}, "
                f"got {spec.weight:g}"
            )
        if any(seen.name == spec.name for seen in checked):
            raise InvalidRequest(f"LoRA {spec.name!r} is asked for twice; keep one <lora:{spec.name}:weight> tag")
        checked.append(LoraSpec(spec.name, float(spec.weight)))
    if len(checked) > MAX_LORAS_PER_REQUEST:
        raise InvalidRequest(f"{len(checked)} LoRAs in one prompt; at most {MAX_LORAS_PER_REQUEST} are applied at once")
    return tuple(checked)


def strip_loras(prompt: str) -> str:
    """The prompt as the text encoder reads it: every ``<lora:...>`` tag taken out (as A1111 does), and the
    spaces a tag leaves behind tidied."""
    if "<lora:" not in prompt:
        return prompt
    lines = (_SPACES.sub(" ", line).strip() for line in _LORA_TAG.sub("", prompt).split("\n"))
    return "\n".join(lines).strip()


def insert_lora(prompt: str, name: str, weight: float) -> str:
    """``prompt`` with ``<lora:name:weight>``: the weight of a tag already there for ``name`` is changed,
    otherwise the tag is added at the end, as A1111's extra-networks cards do."""
    tag = lora_tag(name, weight)
    for match in _LORA_TAG.finditer(prompt):
        if match.group(1).partition(":")[0].strip() == name:
            return prompt[: match.start()] + tag + prompt[match.end() :]
    if not prompt.strip():
        return tag
    return prompt.rstrip() + " " + tag


def lora_hashes_field(applied: Sequence[AppliedLora]) -> str:
    """A1111's ``Lora hashes`` value: ``name: hash`` pairs joined by commas (colons and commas taken out of the
    names, which would break the pairs)."""
    return ", ".join(
        f"{item.file.name.replace(':', '').replace(',', '')}: {item.short_hash}" for item in applied if item.short_hash
    )


def safetensors_data_hash(path: Path) -> str:
    """The SHA-256 (hex) of a ``.safetensors`` file's tensor data, skipping the 8-byte length and the JSON header
    it announces: what A1111 and kohya's sd-scripts call a LoRA's hash. Metadata edits do not change it."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        header = file.read(8)
        if len(header) < 8:
            raise InvalidRequest(f"LoRA file {path.name!r} is damaged (too short); download it again")
        file.seek(8 + int.from_bytes(header, "little"))
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_loras(folder: Path) -> list[LoraFile]:
    """The ``.safetensors`` LoRAs under ``folder`` (sub-folders included), by name. A name found twice keeps the
    file nearer the top (then the first in alphabetical order), as a prompt can name only one of them."""
    if not folder.is_dir():
        return []
    found: dict[str, LoraFile] = {}
    paths = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() == LORA_SUFFIX and p.is_file()),
        key=lambda p: (len(p.relative_to(folder).parts), str(p).lower()),
    )
    for path in paths:
        if path.stem in found:
            log.warning("LoRA %s is hidden by %s of the same name", path, found[path.stem].path)
            continue
        found[path.stem] = LoraFile(path.stem, path)
    return sorted(found.values(), key=lambda item: item.name.lower())


class LoraLibrary:
    """The LoRAs of ``--lora-dir``, looked up by name, with their hashes computed once per file version.

    The folder is read again on every lookup (a listing is cheap), so LoRAs dropped in while the studio runs are
    found without a restart.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._hashes: dict[tuple[Path, int, int], str] = {}
        self._lock = threading.Lock()

    def files(self) -> list[LoraFile]:
        return list_loras(self.folder) if self.folder is not None else []

    def names(self) -> list[str]:
        return [item.name for item in self.files()]

    def short_hash(self, file: LoraFile) -> str:
        """The first 12 hex digits of the file's A1111 hash; computed once per (path, size, modification time)."""
        stat = file.path.stat()
        key = (file.path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is None:
            cached = safetensors_data_hash(file.path)[:SHORT_HASH_DIGITS]
            with self._lock:
                self._hashes[key] = cached
        return cached

    def resolve(self, specs: Sequence[LoraSpec]) -> tuple[AppliedLora, ...]:
        """The files ``specs`` name, with their weights and hashes. An unknown name is refused with the list of
        the LoRAs there are."""
        if not specs:
            return ()
        by_name = {item.name: item for item in self.files()}
        applied = []
        for spec in specs:
            file = by_name.get(spec.name)
            if file is None:
                raise InvalidRequest(unknown_lora_message(spec.name, sorted(by_name), self.folder))
            applied.append(AppliedLora(file, spec.weight, self.short_hash(file)))
        return tuple(applied)


def unknown_lora_message(name: str, available: Sequence[str], folder: Path | None) -> str:
    where = f"{folder.name}/" if folder is not None else "--lora-dir"
    if not available:
        return (
            f"Unknown LoRA {name!r}: there are no LoRAs yet. Put .safetensors LoRA files in the LoRA folder "
            f"({where}, set by --lora-dir) and name them in the prompt as <lora:file-name:0.8>."
        )
    shown = ", ".join(available[:30]) + (f" and {len(available) - 30} more" if len(available) > 30 else "")
    return f"Unknown LoRA {name!r}. The LoRAs there are: {shown}. Check the spelling in <lora:{name}:...>."


def with_loras(prompt: str, extra: object) -> tuple[str, tuple[LoraSpec, ...]]:
    """The prompt with a tag for each LoRA of ``extra`` (LoRAs asked for apart from the prompt, as A1111's
    "Add network to prompt" setting does), and every LoRA its tags now ask for."""
    if not isinstance(extra, tuple | list):
        raise InvalidRequest(f"loras must be a list of LoraSpec(name, weight), got {type(extra).__name__}")
    for spec in check_specs(extra):
        prompt = insert_lora(prompt, spec.name, spec.weight)
    return prompt, parse_loras(prompt)
