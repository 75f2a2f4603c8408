"""A1111's prompt syntax, taken apart: emphasis and ``BREAK``.

- ``(words)`` weighs them 1.1 times, ``[words]`` 1/1.1 times; nested, the factors multiply (``((words))`` is 1.21).
- ``(words:1.5)`` weighs them 1.5 times (times any bracket around it).
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` are the characters themselves; ``\\\\`` a backslash.
- A closing bracket with no opening one is text; an opening one never closed weighs everything after it.
- ``BREAK`` (in capitals, a word of its own) starts a new 75-token chunk of the prompt (``studio/prompt_encoding.py``).

Pure text in, (text, weight) pieces out, so the rules are tested without a model. A prompt with none of this is one
piece of weight 1: it is encoded exactly as diffusers encodes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UP = 1.1
"""What ``( )`` multiplies by, and ``[ ]`` divides by."""

_PIECES = re.compile(
    r"""
    \\[\\()\[\]]                      # an escaped character
    | \(|\[                           # an opening bracket
    | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)  # a weight and the bracket it closes
    | \)|\]                           # a closing bracket
    | \bBREAK\b                       # a chunk break
    | [^\\()\[\]:B]+                  # text
    | .                               # anything else, one character at a time (a lone colon, a B)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Piece:
    """A run of the prompt's text and its weight; ``is_break`` for a ``BREAK``."""

    text: str
    weight: float = 1.0
    is_break: bool = False


BREAK_PIECE = Piece("", 1.0, is_break=True)


def parse_prompt(prompt: str) -> list[Piece]:
    """``prompt`` as pieces of text with their weights, neighbours of the same weight merged. Round and square
    brackets close separately, as A1111's do: ``)`` closes the last ``(`` whatever ``[`` came after it."""
    pieces: list[list[object]] = []  # [text, weight, is_break]; weights change in place as brackets close
    opened: dict[str, list[int]] = {"(": [], "[": []}  # where each open bracket's pieces start

    def weigh(bracket: str, factor: float) -> bool:
        if not opened[bracket]:
            return False
        for piece in pieces[opened[bracket].pop() :]:
            piece[1] = float(piece[1]) * factor  # type: ignore[arg-type]
        return True

    for match in _PIECES.finditer(prompt):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0, False])
        elif token in ("(", "["):
            opened[token].append(len(pieces))
        elif weight is not None:
            if not weigh("(", float(weight)):
                pieces.append([token, 1.0, False])
        elif token in (")", "]"):
            if not weigh("(" if token == ")" else "[", UP if token == ")" else 1 / UP):
                pieces.append([token, 1.0, False])
        elif token == "BREAK":
            pieces.append(["", 1.0, True])
        else:
            pieces.append([token, 1.0, False])
    for bracket in ("(", "["):  # never closed: each weighs everything after it
        while opened[bracket]:
            weigh(bracket, UP if bracket == "(" else 1 / UP)
    return _merged(pieces)


def _merged(pieces: list[list[object]]) -> list[Piece]:
    merged: list[Piece] = []
    for text, weight, is_break in pieces:
        if is_break:
            merged.append(BREAK_PIECE)
        elif merged and not merged[-1].is_break and merged[-1].weight == weight:
            merged[-1] = Piece(merged[-1].text + str(text), float(weight))  # type: ignore[arg-type]
        elif text:
            merged.append(Piece(str(text), float(weight)))  # type: ignore[arg-type]
    return merged or [Piece("")]


def plain_text(prompt: str) -> str:
    """The words of ``prompt`` without its syntax: what a prompt whose weights are all 1 says to the text encoder
    (``(red:1)`` is ``red``, ``\\(`` is ``(``)."""
    return "".join(piece.text for piece in parse_prompt(prompt))
