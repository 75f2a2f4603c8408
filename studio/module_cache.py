"""A least-recently-used cache of the extra modules tasks add to the base model, sized in bytes.

ControlNets and inpainting UNets are loaded on first use and kept for the next request; past the budget the
one used longest ago is dropped. A module that a running job holds is never dropped, whatever the budget says:
the job keeps its reference, and the module is only forgotten by the cache once no job uses it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers: what it costs to keep it loaded."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


@dataclass
class _Entry:
    module: torch.nn.Module
    size: int
    users: int = 0


class ModuleCache:
    """Modules by key (e.g. ``("controlnet", source)``), within ``budget_bytes``. Thread-safe."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def keys(self) -> list[tuple[str, str]]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def sizes(self) -> list[tuple[tuple[str, str], int]]:
        """Each cached key with the bytes its module takes, least recently used first."""
        with self._lock:
            return [(key, entry.size) for key, entry in self._entries.items()]

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    @contextmanager
    def use(self, key: tuple[str, str], load: Callable[[], torch.nn.Module]) -> Iterator[torch.nn.Module]:
        """The module for ``key`` (loaded with ``load`` when missing), held for the duration of the block."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                module = load()
                entry = _Entry(module, module_bytes(module))
                self._entries[key] = entry
                log.info("cached %s %s (%.1f MB)", *key, entry.size / 2**20)
            self._entries.move_to_end(key)
            entry.users += 1
            self._evict()
        try:
            yield entry.module
        finally:
            with self._lock:
                entry.users -= 1
                self._evict()

    def _evict(self) -> None:
        """Drop least recently used modules that no job holds until the cache fits its budget."""
        for key in list(self._entries):
            if self.used_bytes <= self.budget_bytes:
                return
            if self._entries[key].users == 0:
                log.info("evicting %s %s to stay within the cache budget", *key)
                del self._entries[key]

    def clear(self) -> None:
        """Forget every module no job holds."""
        with self._lock:
            for key in [k for k, entry in self._entries.items() if entry.users == 0]:
                del self._entries[key]
