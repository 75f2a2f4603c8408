"""A1111's prompt editing: a prompt that changes while the picture is drawn.

- ``[from:to:when]`` reads ``from`` until step ``when``, then ``to``; ``[to:when]`` adds ``to`` after it, and
  ``[from::when]`` takes ``from`` away after it. ``when`` below 1 is a fraction of the steps (0.5: halfway).
- ``[a|b|c]`` alternates: ``a`` at step 1, ``b`` at step 2, ``c`` at step 3, ``a`` again at step 4...
- Both nest, and emphasis inside them stays emphasis (``studio/prompt_syntax.py`` reads each step's text). A square
  bracket without a ``:number`` or a ``|`` at its own level is emphasis (``[word]``), left as it is.

Pure text in: for each step, the text the step reads, as runs of steps (``texts_by_step``). Early steps set the
composition and late ones the details, so ``[dog:cat:0.3]`` draws a cat in a dog's pose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*")


@dataclass(frozen=True)
class _Edit:
    before: list[object]
    after: list[object]
    when: float


@dataclass(frozen=True)
class _Alternation:
    options: list[list[object]]


def _parse(text: str) -> list[object]:
    """``text`` as parts: strings (emphasis and escapes kept as they are), edits and alternations."""
    parts: list[object] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            parts.append(text[index : index + 2])
            index += 2
        elif char == "[":
            group, index = _group(text, index)
            parts += group
        else:
            parts.append(char)
            index += 1
    return _joined(parts)


def _joined(parts: list[object]) -> list[object]:
    """Neighbouring strings joined into one."""
    joined: list[object] = []
    for part in parts:
        if isinstance(part, str) and joined and isinstance(joined[-1], str):
            joined[-1] = joined[-1] + part
        else:
            joined.append(part)
    return joined


def _group(text: str, start: int) -> tuple[list[object], int]:
    """The square-bracket group at ``start`` as parts (an edit, an alternation, or emphasis around its parts) and
    where the text goes on."""
    end = _matching(text, start)
    if end is None:
        return ["["], start + 1  # never closed: emphasis to the end, as prompt_syntax reads it
    inner = text[start + 1 : end]
    pieces = _split_top_level(inner, "|")
    if len(pieces) > 1:
        return [_Alternation([_parse(piece) for piece in pieces])], end + 1
    pieces = _split_top_level(inner, ":")
    number = _NUMBER.fullmatch(pieces[-1]) if len(pieces) in (2, 3) else None
    if number is not None:
        before = _parse(pieces[0]) if len(pieces) == 3 else []
        return [_Edit(before, _parse(pieces[-2]), float(number.group(1)))], end + 1
    return ["[", *_parse(inner), "]"], end + 1


def _matching(text: str, start: int) -> int | None:
    """Where the ``[`` at ``start`` closes (escaped brackets skipped), or None."""
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` where it is outside every bracket (and not escaped)."""
    pieces, depth, current, index = [], 0, "", 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current += text[index : index + 2]
            index += 2
            continue
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == separator and depth == 0:
            pieces.append(current)
            current = ""
        else:
            current += char
        index += 1
    pieces.append(current)
    return pieces


def _render(parts: list[object], step: int, steps: int) -> str:
    """The text ``parts`` read at ``step`` (1-based) of ``steps``."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, _Edit):
            when = part.when * steps if part.when < 1 else part.when
            out.append(_render(part.before if step <= int(when) else part.after, step, steps))
        elif isinstance(part, _Alternation):
            out.append(_render(part.options[(step - 1) % len(part.options)], step, steps))
    return "".join(out)


class EditedPrompt:
    """A prompt taken apart once, to be read at any step (a pipeline call reads it after every step)."""

    def __init__(self, prompt: str) -> None:
        self._parts = _parse(prompt)

    @property
    def changes(self) -> bool:
        """Whether the prompt uses prompt editing or alternation at all."""
        return any(not isinstance(part, str) for part in self._parts)

    def text_at(self, step: int, steps: int) -> str:
        """The text the prompt reads at ``step`` (1-based) of ``steps``."""
        return _render(self._parts, step, steps)


def changes_over_steps(prompt: str) -> bool:
    """Whether ``prompt`` uses prompt editing or alternation at all."""
    return EditedPrompt(prompt).changes


def texts_by_step(prompt: str, steps: int) -> list[tuple[int, str]]:
    """``prompt``'s texts as runs: (last step of the run, text), in order; one run for a prompt that never
    changes."""
    edited = EditedPrompt(prompt)
    runs: list[tuple[int, str]] = []
    for step in range(1, max(1, steps) + 1):
        text = edited.text_at(step, steps)
        if runs and runs[-1][1] == text:
            runs[-1] = (step, text)
        else:
            runs.append((step, text))
    return runs
