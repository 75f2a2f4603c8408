"""The models the REST API may name: what ``/sd-models`` lists and ``sd_model_checkpoint`` may switch to.

A REST client may switch between the model the studio was started with and every model it has served since
(switched to by the operator's model picker, say); it cannot make the server load an arbitrary path or download
an arbitrary Hub repository. Models are named as the metadata names them (a Hub id, or a local model's folder
or file name), never by their path.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence

from safetensors import safe_open

from studio.composition import Studio
from studio.errors import InvalidRequest
from studio.loras import LoraFile, LoraLibrary
from studio.model_manager import DEFAULT_CONTROLNETS
from studio.service import model_name

_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]+\]$")


class KnownModels:
    """The start-up model and every model seen serving since, in that order."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._sources = [studio.settings.model]
        self._lock = threading.Lock()

    def sources(self) -> list[str]:
        with self._lock:
            current = self.studio.manager.source
            if current not in self._sources:
                self._sources.append(current)
            return list(self._sources)


def model_entry(source: str) -> dict[str, object]:
    """One ``/sd-models`` entry, in A1111's shape (no hash: the studio does not hash weights)."""
    name = model_name(source)
    return {"title": name, "model_name": name, "hash": None, "sha256": None, "filename": name, "config": None}


def resolve_checkpoint(name: str, sources: Sequence[str]) -> str:
    """The source ``name`` stands for: a listed model by its title (A1111's trailing ``[hash]`` allowed)."""
    wanted = _HASH_SUFFIX.sub("", name.strip())
    for source in sources:
        if wanted in (model_name(source), source):
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
