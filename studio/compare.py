"""Side-by-side comparison: prompts one per line, a second axis of values, the word diff and the labelled grid.

Pure Python and PIL (no torch): parsing what the user typed, finding the words that differ between prompts, and
drawing the grid image. The service runs the cells.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from studio.errors import InvalidRequest

NO_AXIS = "None"
AXES = (NO_AXIS, "Sampler", "Steps", "CFG scale", "Seed", "Strength", "Var. seed", "Var. strength")
"""A1111's X/Y plot names; "Var. seed" and "Var. strength" are the variation seed and its strength."""
MAX_PROMPTS = 8
MAX_AXIS_VALUES = 16

AxisValue = str | int | float


def parse_prompts(text: object) -> tuple[str, ...]:
    """Prompts one per line; blank lines are skipped. 1-8 of them (one only makes sense with an axis)."""
    if not isinstance(text, str):
        raise InvalidRequest(f"prompts must be text, one prompt per line; got {type(text).__name__}")
    prompts = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not prompts:
        raise InvalidRequest("enter the prompts to compare, one per line")
    if len(prompts) > MAX_PROMPTS:
        raise InvalidRequest(f"{len(prompts)} prompts; compare at most {MAX_PROMPTS} at once")
    return prompts


def _number(axis: str, item: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = float(item)
    except ValueError:
        raise InvalidRequest(
            f"{axis} values must be numbers separated by commas, e.g. "
            f"{'10, 20, 30' if kind is int else '4, 7, 10.5'}; {item!r} is not one"
        ) from None
    if kind is int:
        if not value.is_integer():
            raise InvalidRequest(f"{axis} values must be whole numbers; {item!r} is not one")
        return int(value)
    return value


def parse_axis(axis: object, text: object) -> tuple[AxisValue, ...]:
    """The values of ``axis`` from comma-separated ``text`` (sampler names, or numbers), in the order typed."""
    if axis not in AXES:
        raise InvalidRequest(f"axis must be one of: {', '.join(AXES)}; got {axis!r}")
    if axis == NO_AXIS:
        return ()
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"enter the {axis} values to compare, separated by commas")
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) > MAX_AXIS_VALUES:
        raise InvalidRequest(f"{len(items)} {axis} values; compare at most {MAX_AXIS_VALUES} at once")
    if axis == "Sampler":
        values: tuple[AxisValue, ...] = tuple(items)
    else:
        kind = int if axis in ("Steps", "Seed", "Var. seed") else float
        values = tuple(_number(str(axis), item, kind) for item in items)
    if len(set(values)) != len(values):
        raise InvalidRequest(f"the {axis} values repeat one another: {text.strip()}")
    return values


def format_axis_value(axis: str, value: AxisValue) -> str:
    if isinstance(value, float):
        return f"{axis}: {value:g}"
    return f"{axis}: {value}"


def differing_words(prompts: Sequence[str]) -> list[list[tuple[str, bool]]]:
    """Each prompt as (word, differs) pairs: a word differs unless it is part of what all prompts share, in order.

    A word-level diff of every prompt against the first; words of the first prompt differ when some other
    prompt lacks them there. With one prompt nothing differs.
    """
    words = [prompt.split() for prompt in prompts]
    differs = [[False] * len(w) for w in words]
    for other in range(1, len(words)):
        matcher = difflib.SequenceMatcher(a=words[0], b=words[other], autojunk=False)
        kept_first = set()
        kept_other = set()
        for block in matcher.get_matching_blocks():
            kept_first.update(range(block.a, block.a + block.size))
            kept_other.update(range(block.b, block.b + block.size))
        for i in range(len(words[0])):
            if i not in kept_first:
                differs[0][i] = True
        for j in range(len(words[other])):
            if j not in kept_other:
                differs[other][j] = True
    return [list(zip(w, d, strict=True)) for w, d in zip(words, differs, strict=True)]


@dataclass(frozen=True)
class GridLabels:
    columns: Sequence[str]
    rows: Sequence[str]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines[:4]) + (" ..." if len(lines) > 4 else "")


def draw_grid(cells: Sequence[Sequence[Image.Image]], labels: GridLabels) -> Image.Image:
    """One image of ``cells[row][column]``, with the column labels above and the row labels on the left.

    The labels are drawn into the picture, so the grid explains itself wherever it is shared.
    """
    rows, columns = len(cells), len(cells[0])
    cell_w = max(image.width for row in cells for image in row)
    cell_h = max(image.height for row in cells for image in row)
    font = _font(max(12, min(28, cell_w // 12)))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    column_texts = [_wrap(scratch, text, font, cell_w - 8) for text in labels.columns]
    header_h = max((scratch.multiline_textbbox((0, 0), t, font=font)[3] for t in column_texts), default=0) + 12
    row_w = 0
    row_texts = [_wrap(scratch, text, font, max(cell_w // 2, 120)) for text in labels.rows]
    if row_texts:
        row_w = max(scratch.multiline_textbbox((0, 0), t, font=font)[2] for t in row_texts) + 16
    grid = Image.new("RGB", (row_w + columns * cell_w, header_h + rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(column_texts):
        box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
        x = row_w + c * cell_w + (cell_w - (box[2] - box[0])) // 2
        draw.multiline_text((x, 6), text, fill="black", font=font, align="center")
    for r, text in enumerate(row_texts):
        box = draw.multiline_textbbox((0, 0), text, font=font)
        top = header_h + r * cell_h + (cell_h - (box[3] - box[1])) // 2
        draw.multiline_text((8, top), text, fill="black", font=font)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            grid.paste(image, (row_w + c * cell_w, header_h + r * cell_h))
    return grid
