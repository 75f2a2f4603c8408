"""Where finished images are kept: ``<outputs>/<task>/<YYYY-MM-DD>/<NNNNN>-<seed>.png``, as A1111 names them.

Names are sequential and never collide, even with several requests saving at once: each number is claimed by
creating its file exclusively (``O_EXCL``), so two writers can never get the same one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

_NUMBERED = re.compile(r"^(\d{5,})-")


class OutputStore:
    """Saves PNGs with their metadata under ``root``; with ``root=None`` (``--no-save``) it keeps nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._next: dict[Path, int] = {}

    def _claim(self, folder: Path, seed: int) -> Path:
        with self._lock:
            if folder not in self._next:
                numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
                self._next[folder] = max(numbers, default=-1) + 1
            while True:
                number = self._next[folder]
                self._next[folder] = number + 1
                path = folder / f"{number:05d}-{seed}.png"
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                except FileExistsError:
                    continue
                return path

    def save(self, image: Image.Image, task: str, seed: int, pnginfo: PngInfo) -> Path | None:
        """Write ``image`` as a PNG with ``pnginfo``; returns its path, or None when saving is off."""
        if self.root is None:
            return None
        folder = self.root / task / dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        path = self._claim(folder, seed)
        image.save(path, format="PNG", pnginfo=pnginfo)
        return path

    def save_beside(self, path: Path | None, image: Image.Image, suffix: str, pnginfo: PngInfo) -> Path | None:
        """Write ``image`` next to an image already saved at ``path``, named ``<its name>-<suffix>.png`` (the
        edge map a ControlNet followed, say); nothing when saving is off."""
        if path is None:
            return None
        beside = path.with_name(f"{path.stem}-{suffix}.png")
        image.save(beside, format="PNG", pnginfo=pnginfo)
        return beside
