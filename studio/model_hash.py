"""A model's sha256, as A1111 writes it (``Model hash: <first 10 hex digits>``) and lists it (``/sd-models``).

A1111 hashes the single checkpoint file it loaded: the sha256 of the file's bytes. The studio does the same for a
single-file model. A diffusers folder (the micro model, a ``--models-dir`` folder, a Hub model in the local cache)
has no single file, so its equivalent is the sha256 of the bytes of its weight files (``.safetensors``, ``.bin``,
``.ckpt``, ``.pt``, ``.pth``, found in every sub-folder), read one after the other in the order of their paths
relative to the folder (``text_encoder/model.safetensors`` before ``unet/...``). Configs and tokenizer files are left
out: they do not change between copies of the same weights. A Hub model that is not in the local cache has no hash.

A hash is computed once per process and kept, keyed by the files' paths, sizes and modification times, so a file
replaced in place is hashed again. Pure Python (hashlib): no torch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from studio.micro.location import resolve_alias
from studio.model_catalog import PICKLE_CHECKPOINT_SUFFIXES

log = logging.getLogger(__name__)

SHORT_HASH_DIGITS = 10
"""A1111's short hash: the first 10 hex digits of the sha256 (``Model hash`` and ``/sd-models``' ``hash``)."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", *PICKLE_CHECKPOINT_SUFFIXES)
_CHUNK_BYTES = 1 << 20

_Signature = tuple[tuple[str, int, int], ...]
_cache: dict[tuple[str, _Signature], str] = {}
_cache_lock = threading.Lock()
_hash_lock = threading.Lock()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a diffusers folder, in the order they are hashed: by their path inside the folder."""
    found = [path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _hub_folder(repo_id: str) -> Path | None:
    """The local cache's snapshot of a Hub model, without going to the network; None when it is not there."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _files_of(source: str) -> list[Path] | None:
    """The files whose bytes make the model's hash, or None when the model has no files here."""
    path = Path(resolve_alias(source)).expanduser()
    if path.is_file():
        return [path]
    folder = path if path.is_dir() else _hub_folder(source)
    if folder is None:
        return None
    files = weight_files(folder)
    return files or None


def _signature(files: list[Path]) -> _Signature:
    stats = [(file, file.stat()) for file in files]
    return tuple((str(file), stat.st_size, stat.st_mtime_ns) for file, stat in stats)


def sha256_of(source: str) -> str | None:
    """The model's sha256 in hex (see the module's docstring for a folder), computed once; None when the model
    has no files here (a Hub model not downloaded) or they cannot be read."""
    try:
        files = _files_of(source)
        if files is None:
            return None
        key = (source, _signature(files))
    except OSError as error:
        log.warning("cannot hash %s: %s", source, error)
        return None
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    with _hash_lock:  # one hash at a time: a second caller of the same model waits, then finds it cached
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        try:
            for file in files:
                with file.open("rb") as stream:
                    while chunk := stream.read(_CHUNK_BYTES):
                        digest.update(chunk)
        except OSError as error:
            log.warning("cannot hash %s: %s", source, error)
            return None
        with _cache_lock:
            _cache[key] = digest.hexdigest()
            return _cache[key]


def cached_sha256(source: str) -> str | None:
    """The model's sha256 when it has been computed already (listing many models must not read them all)."""
    try:
        files = _files_of(source)
        key = (source, _signature(files)) if files is not None else None
    except OSError:
        return None
    with _cache_lock:
        return _cache.get(key) if key is not None else None


def short_hash(sha256: str | None) -> str | None:
    """A1111's short hash of a sha256."""
    return sha256[:SHORT_HASH_DIGITS] if sha256 else None
