"""The models the REST API may name: what ``/sd-models`` lists and ``sd_model_checkpoint`` may switch to.

They are the models the UI's picker offers (the model that serves and the loadable models of ``--models-dir``) and
every model that has served since start-up; a REST client cannot make the server load an arbitrary path or download
an arbitrary Hub repository. A model that failed to load (a configured default the studio could not reach, a file
that went missing) is left out until it loads again. Models are named as the metadata names them (a Hub id, or a
local model's folder or file name), never by their path, with A1111's ``[short hash]`` once it is known.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from safetensors import safe_open

from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.loading import looks_local
from studio.loras import LoraFile, LoraLibrary
from studio.model_hash import cached_sha256, sha256_of, short_hash
from studio.model_manager import DEFAULT_CONTROLNETS
from studio.service import model_name

_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]+\]$")


def _identity(source: str) -> str:
    """The same model named two ways (a relative and an absolute path) is one model."""
    if not looks_local(source):
        return source
    try:
        return str(Path(source).expanduser().resolve())
    except (OSError, RuntimeError):
        return source


class KnownModels:
    """The models a REST client may choose: the serving one, the picker's, and every model seen serving since, in
    that order, without those that failed to load."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._served = [studio.manager.source]
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def failed(self, source: str, reason: str) -> None:
        """Record that ``source`` could not be loaded: it is not listed until it loads."""
        with self._lock:
            self._failed[_identity(source)] = reason

    def loaded(self, source: str) -> None:
        """Record that ``source`` served a job (a model that failed before is listed again)."""
        with self._lock:
            self._failed.pop(_identity(source), None)
            if source not in self._served:
                self._served.append(source)

    def sources(self) -> list[str]:
        """The models to list, each once (the folder of ``--models-dir`` is read again on every call)."""
        current = self.studio.manager.source
        with self._lock:
            if current not in self._served:
                self._served.append(current)
            candidates = list(self._served)
            failed = set(self._failed)
        candidates += [entry.source for entry in self.studio.system.models() if entry.refused is None]
        seen: set[str] = set()
        listed = []
        for source in candidates:
            key = _identity(source)
            if key in seen or key in failed:
                continue
            seen.add(key)
            listed.append(source)
        return listed


def checkpoint_title(source: str, sha256: str | None) -> str:
    """A1111's title of a model: its name, then ``[short hash]`` once the hash is known."""
    short = short_hash(sha256)
    return f"{model_name(source)} [{short}]" if short else model_name(source)


def model_entry(source: str, serving: str) -> dict[str, object]:
    """One ``/sd-models`` entry, in A1111's shape. The serving model is hashed (once); the others show the hash
    when it is known already, as A1111 lists models it has not hashed yet without one (hashing a folder of large
    checkpoints on every listing would take minutes). Call from a worker thread."""
    sha256 = sha256_of(source) if source == serving else cached_sha256(source)
    return {
        "title": checkpoint_title(source, sha256),
        "model_name": model_name(source),
        "hash": short_hash(sha256),
        "sha256": sha256,
        "filename": Path(source).name if looks_local(source) else source,
        "config": None,
    }


def resolve_checkpoint(name: str, sources: Sequence[str]) -> str:
    """The source ``name`` stands for: a listed model by its title (A1111's trailing ``[hash]`` allowed), its file
    name or its short hash."""
    text = name.strip()
    wanted = _HASH_SUFFIX.sub("", text)
    for source in sources:
        names = {model_name(source), source, *([Path(source).name] if looks_local(source) else [])}
        if wanted in names or text == short_hash(cached_sha256(source)):
            return source
    titles = ", ".join(model_name(source) for source in sources)
    raise InvalidRequest(
        f"{name!r} is not one of this studio's models ({titles}); the sdapi/v1/sd-models route lists them"
    )


def controlnet_names(studio: Studio) -> list[str]:
    """The ControlNet a unit gets: ``--controlnet-model``, else the loaded model family's canny ControlNet;
    before the model has loaded (and its family is known), the canny ControlNet of every family."""
    manager = studio.manager
    if manager.controlnet_source:
        return [model_name(manager.controlnet_source)]
    if manager.loaded is not None:
        return [model_name(manager.controlnet_for(manager.loaded))]
    return [model_name(source) for source in DEFAULT_CONTROLNETS.values()]


def lora_entries(library: LoraLibrary) -> list[dict[str, object]]:
    """``/loras`` in A1111's shape: each LoRA's name (what ``<lora:name:weight>`` takes), its path inside the LoRA
    folder (never the server's path) and the training metadata its file carries."""
    folder = library.folder
    if folder is None:
        return []
    return [
        {
            "name": item.name,
            "alias": item.name,
            "path": item.path.relative_to(folder).as_posix(),
            "metadata": lora_metadata(item),
        }
        for item in library.files()
    ]


def lora_metadata(item: LoraFile) -> dict[str, object]:
    """The ``__metadata__`` of a LoRA's safetensors header (kohya's ``ss_*`` keys), JSON-valued strings parsed as
    A1111 parses them; a file whose header cannot be read has none (generating with it explains why)."""
    try:
        with safe_open(str(item.path), framework="numpy") as file:
            raw = file.metadata() or {}
    except (OSError, ValueError, RuntimeError):
        return {}
    return {key: _parsed(value) for key, value in raw.items()}


def _parsed(value: str) -> object:
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
