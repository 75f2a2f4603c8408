"""Where finished images are kept: ``<outputs>/<task>/<YYYY-MM-DD>/<NNNNN>-<seed>.png``, as A1111 names them
(``.jpg`` or ``.webp`` with ``--save-format``).

Names are sequential and never collide, even with several requests saving at once: each number is claimed by
creating its file exclusively (``O_EXCL``), so two writers can never get the same one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from studio.metadata import FILE_SUFFIXES, check_image_format, write_image

_NUMBERED = re.compile(r"^(\d{5,})-")


class OutputStore:
    """Saves images with their metadata under ``root``; with ``root=None`` (``--no-save``) it keeps nothing.

    ``image_format`` (png, jpeg or webp) is the format of every save that does not name its own.
    """

    def __init__(self, root: Path | None, image_format: str = "png") -> None:
        self.root = root
        self.image_format = check_image_format(image_format)
        self._lock = threading.Lock()
        self._next: dict[Path, int] = {}

    def _claim(self, folder: Path, seed: int, suffix: str = ".png") -> Path:
        with self._lock:
            if folder not in self._next:
                numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
                self._next[folder] = max(numbers, default=-1) + 1
            while True:
                number = self._next[folder]
                self._next[folder] = number + 1
                path = folder / f"{number:05d}-{seed}{suffix}"
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                except FileExistsError:
                    continue
                return path

    def save(
        self,
        image: Image.Image,
        task: str,
        seed: int,
        parameters: str,
        record: Mapping[str, Any],
        image_format: str | None = None,
    ) -> Path | None:
        """Write ``image`` with its metadata as ``image_format`` (the store's own when None); returns its path, or
        None when saving is off."""
        if self.root is None:
            return None
        image_format = check_image_format(image_format or self.image_format)
        folder = self.root / task / dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        path = self._claim(folder, seed, FILE_SUFFIXES[image_format])
        write_image(image, str(path), image_format, parameters, record)
        return path

    def save_beside(
        self,
        path: Path | None,
        image: Image.Image,
        suffix: str,
        parameters: str,
        record: Mapping[str, Any],
        image_format: str = "png",
    ) -> Path | None:
        """Write ``image`` with its metadata next to an image already saved at ``path``, named ``<its
        name>-<suffix>`` (the edge map a ControlNet followed, a comparison's grid) as ``image_format``; nothing when
        saving is off."""
        if path is None:
            return None
        beside = path.with_name(f"{path.stem}-{suffix}{FILE_SUFFIXES[check_image_format(image_format)]}")
        write_image(image, str(beside), image_format, parameters, record)
        return beside
