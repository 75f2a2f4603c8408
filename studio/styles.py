"""Prompt styles, as A1111's ``styles.csv``: saved pieces of prompt and negative prompt, added by name.

The file is A1111's own (columns ``name``, ``prompt``, ``negative_prompt``; others are ignored), so an A1111 user
points ``--styles`` at theirs. A style's text holding ``{prompt}`` gets the prompt put in its place; otherwise it
is added after the prompt with a comma, as A1111 does. Styles are applied before a request is made, so the
request, the pictures' parameters text and PNG Info hold the prompt as it was drawn, as in A1111.

The file is read again when it changes on disk, so a style added by hand is there at the next generation.
"""

from __future__ import annotations

import csv
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InvalidRequest

log = logging.getLogger(__name__)

PROMPT_PLACE = "{prompt}"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge(style_text: str, prompt: str) -> str:
    """``prompt`` with one style's text: in the style's ``{prompt}`` place, or after it with a comma."""
    if PROMPT_PLACE in style_text:
        return style_text.replace(PROMPT_PLACE, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def read_styles(path: Path) -> dict[str, PromptStyle]:
    """The styles of an A1111 ``styles.csv``, by name, in the file's order; rows without a name are skipped."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    styles: dict[str, PromptStyle] = {}
    for row in rows:
        name = (row.get("name") or "").strip()
        if name:
            styles[name] = PromptStyle(name, row.get("prompt") or "", row.get("negative_prompt") or "")
    return styles


class StyleLibrary:
    """The styles of one ``--styles`` file (none without one), read again whenever the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._styles: dict[str, PromptStyle] = {}

    def styles(self) -> dict[str, PromptStyle]:
        """Every style by name; a missing or unreadable file is no styles (and a warning in the log)."""
        if self.path is None:
            return {}
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    self._styles, self._stamp = read_styles(self.path), stamp
            except (OSError, UnicodeDecodeError, csv.Error) as error:
                if self._stamp is not None or self._styles:
                    log.warning("styles file %s cannot be read (%s); no styles until it can", self.path, error)
                self._styles, self._stamp = {}, None
            return dict(self._styles)

    def names(self) -> list[str]:
        return list(self.styles())

    def apply(self, prompt: str, negative_prompt: str, names: Sequence[str] | None) -> tuple[str, str]:
        """``prompt`` and ``negative_prompt`` with the styles ``names`` added, in the order given."""
        chosen = self._chosen(names)
        return _merged(chosen, "prompt", prompt), _merged(chosen, "negative_prompt", negative_prompt)

    def apply_to_given(self, prompt: str, negative_prompt: str, names: Sequence[str] | None) -> tuple[str, str]:
        """As ``apply``, for prompts where empty means "the first pass's" (the hires prompts): an empty one stays
        empty, so it keeps meaning that."""
        chosen = self._chosen(names) if prompt or negative_prompt else []
        return (
            _merged(chosen, "prompt", prompt) if prompt else prompt,
            _merged(chosen, "negative_prompt", negative_prompt) if negative_prompt else negative_prompt,
        )

    def apply_to_each(
        self, prompts: Sequence[str], negative_prompt: str, names: Sequence[str] | None
    ) -> tuple[tuple[str, ...], str]:
        """Each of ``prompts`` with the styles ``names`` added, and the shared negative prompt with theirs."""
        chosen = self._chosen(names)
        styled = tuple(_merged(chosen, "prompt", prompt) for prompt in prompts)
        return styled, _merged(chosen, "negative_prompt", negative_prompt)

    def _chosen(self, names: Sequence[str] | None) -> list[PromptStyle]:
        """The styles ``names``, in order (the file read once), or an ``InvalidRequest`` naming the unknown ones."""
        if not names:
            return []
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise InvalidRequest(f"styles must be a list of style names, got {names!r}")
        styles = self.styles()
        unknown = [name for name in names if name not in styles]
        if unknown:
            where = (
                f"the styles in {self.path.name} are: {', '.join(styles) or 'none'}"
                if self.path
                else ("this studio has no styles file (--styles)")
            )
            raise InvalidRequest(f"unknown style {', '.join(map(repr, unknown))}; {where}")
        return [styles[name] for name in names]


def _merged(styles: Sequence[PromptStyle], part: str, text: str) -> str:
    """``text`` with each style's ``part`` (its prompt or negative prompt) merged in, in order."""
    for style in styles:
        text = merge(getattr(style, part), text)
    return text
