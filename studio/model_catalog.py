"""What the model picker offers: the models in ``--models-dir``, and which typed-in names it accepts.

Two kinds of model are found there: diffusers folders (a ``model_index.json`` inside) and single-file checkpoints
(``.safetensors`` in the original LDM layout, as Civitai and A1111 installs have them). Pickle checkpoints
(``.ckpt``, ``.pt``, ``.pth``) are listed too but marked refused unless ``--allow-pickle``, so a user sees why their
file does nothing. Other ``.safetensors`` files (LoRAs, VAEs, embeddings) are told apart by their tensor names, read
from the file's header without loading a tensor, and left out; so is the LoRA folder.

Pure Python (json and the safetensors header): listing a folder loads nothing and needs no GPU.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from studio.errors import InvalidRequest

log = logging.getLogger(__name__)

PICKLE_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
# Single-file checkpoints keep the UNet under this prefix (LDM layout); LoRAs, VAEs and embeddings do not.
_UNET_PREFIX = "model.diffusion_model."
_SDXL_PREFIX = "conditioner.embedders.1."
_SD2_TEXT_PREFIX = "cond_stage_model.model."
_SD1_TEXT_PREFIX = "cond_stage_model.transformer."
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_MAX_HEADER_BYTES = 100 * 2**20
_SCAN_DEPTH = 3


@dataclass(frozen=True)
class ModelEntry:
    """One model in the models folder. ``source`` is what ``--model`` would take; ``refused`` says why it will
    not load as things are (None when it will). ``key`` is its place within the models folder (``sd15/model.
    safetensors``): what the picker sends back, so no page or API answer carries a path of the server's."""

    name: str
    source: str
    kind: str  # "diffusers", "single file" or "pickle"
    family: str | None = None
    refused: str | None = None
    key: str = ""

    @property
    def choice(self) -> str:
        """The picker's value for this model: its place in the models folder (its name when it has none)."""
        return self.key or self.name

    @property
    def label(self) -> str:
        """How the picker shows it: the name, its family when known, and why it is refused."""
        details = [self.family or "", self.kind]
        text = f"{self.name} ({', '.join(d for d in details if d)})"
        return f"{text} — {self.refused}" if self.refused else text


def unet_family(config: Mapping[str, Any]) -> str | None:
    """The family a UNet config belongs to: SDXL (size and crop conditioning, ``addition_embed_type`` text_time),
    SD 2.x (1024-wide OpenCLIP text features), SD 1.x (768-wide CLIP text features); None for anything else."""
    if config.get("addition_embed_type") == "text_time":
        return "SDXL"
    width = config.get("cross_attention_dim")
    if width == 1024:
        return "SD 2.x"
    if width == 768:
        return "SD 1.x"
    return None


def _folder_family(folder: Path) -> str | None:
    try:
        return unet_family(json.loads((folder / "unet" / "config.json").read_text()))
    except (OSError, ValueError, AttributeError):
        return None


def safetensors_keys(path: Path) -> list[str] | None:
    """The tensor names in a ``.safetensors`` file's header (the tensors are not read); None when the header
    cannot be read."""
    try:
        with path.open("rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if not 0 < length <= _MAX_HEADER_BYTES:
                return None
            header = json.loads(file.read(length))
    except (OSError, ValueError):
        return None
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else None


def _checkpoint_family(keys: Sequence[str]) -> str | None:
    if any(key.startswith(_SDXL_PREFIX) for key in keys):
        return "SDXL"
    if any(key.startswith(_SD2_TEXT_PREFIX) for key in keys):
        return "SD 2.x"
    if any(key.startswith(_SD1_TEXT_PREFIX) for key in keys):
        return "SD 1.x"
    return None


def _single_file(path: Path) -> ModelEntry | None:
    keys = safetensors_keys(path)
    if keys is None:
        # Listed all the same: loading it says what is wrong with it.
        return ModelEntry(path.stem, str(path), "single file", refused="damaged: its header cannot be read")
    if not any(key.startswith(_UNET_PREFIX) for key in keys):
        return None  # a LoRA, a VAE, an embedding: not a model
    return ModelEntry(path.stem, str(path), "single file", _checkpoint_family(keys))


def _within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def list_models(folder: Path, *, allow_pickle: bool = False, skip: Path | None = None) -> list[ModelEntry]:
    """The models under ``folder`` (up to three levels down), by name. A diffusers folder is one model: its
    sub-folders are not searched. ``skip`` (the LoRA folder) is left out."""
    if not folder.is_dir():
        return []
    entries: list[ModelEntry] = []

    def scan(directory: Path, depth: int) -> None:
        try:
            children = sorted(directory.iterdir(), key=lambda p: p.name.lower())
        except OSError as error:
            log.warning("cannot list %s: %s", directory, error)
            return
        for child in children:
            if child.name.startswith(".") or _within(child, skip):
                continue
            if child.is_dir():
                if (child / "model_index.json").is_file():
                    entries.append(ModelEntry(child.name, str(child), "diffusers", _folder_family(child)))
                elif depth < _SCAN_DEPTH:
                    scan(child, depth + 1)
            elif child.suffix.lower() == ".safetensors":
                entry = _single_file(child)
                if entry is not None:
                    entries.append(entry)
            elif child.suffix.lower() in PICKLE_CHECKPOINT_SUFFIXES:
                refused = None if allow_pickle else "a pickle file: start the studio with --allow-pickle to load it"
                entries.append(ModelEntry(child.name, str(child), "pickle", refused=refused))

    scan(folder, 1)
    keyed = [replace(entry, key=Path(entry.source).relative_to(folder).as_posix()) for entry in entries]
    return sorted(keyed, key=lambda entry: (entry.name.lower(), entry.source))


_WEIGHT_SUFFIXES = (".safetensors", ".bin", *PICKLE_CHECKPOINT_SUFFIXES)


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is a Hugging Face Hub model id (``org/name``) and not something the loader would take for
    a local file: no weight-file suffix, and no such path relative to where the studio runs."""
    return (
        bool(_HUB_ID.match(text))
        and ".." not in text
        and not text.lower().endswith(_WEIGHT_SUFFIXES)
        and not Path(text).exists()
    )


def resolve_choice(choice: object, entries: Sequence[ModelEntry], allowed: Sequence[str] = ()) -> str:
    """The model source a picker value stands for: a listed model (by key, source, name or label), one of ``allowed``
    (the models the studio was started with), or a typed-in Hub id. Any other path is refused, so nobody can make
    the server load a file from outside the models folder."""
    if not isinstance(choice, str) or not choice.strip():
        raise InvalidRequest("choose a model from the list, or type a Hugging Face Hub id such as org/model-name")
    text = choice.strip()
    for entry in entries:
        if text in (entry.choice, entry.source, entry.name, entry.label):
            if entry.refused:
                raise InvalidRequest(f"{entry.name!r} cannot be loaded: {entry.refused}")
            return entry.source
    if text in allowed or is_hub_id(text):
        return text
    raise InvalidRequest(
        f"{Path(text).name!r} is not a model in the models folder nor a Hub id. Put the model (a diffusers folder "
        "or a .safetensors file) in the models folder (--models-dir) and press 🔄, or type a Hub id such as "
        "stabilityai/stable-diffusion-xl-base-1.0."
    )
