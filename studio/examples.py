"""The example prompts and pictures of each generation tab, read from ``assets/examples.json`` (no Gradio here), or
from ``assets/examples-micro.json`` when the studio serves the micro model, which knows only its own small world.

Each example names its values by the tab handler's parameter names (``prompt``, ``steps``, ``image``...), so the
UI can line them up with any tab's inputs; what an example leaves out keeps the widget's default. Pictures are
files under ``assets/`` (drawn by ``assets/make_examples.py``), given as paths relative to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_FILE = ASSETS / "examples.json"
MICRO_EXAMPLES_FILE = ASSETS / "examples-micro.json"
IMAGE_KEYS = ("image", "mask")


@dataclass(frozen=True)
class Example:
    """One example: the label shown for it, and its values by parameter name (pictures as absolute paths)."""

    label: str
    values: Mapping[str, Any] = field(default_factory=dict)


def load_examples(path: Path = EXAMPLES_FILE) -> dict[str, tuple[Example, ...]]:
    """The examples of every tab, by tab id. A picture that is missing is an error naming it: the examples ship
    with the studio, so that is a broken checkout, not a user's mistake."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples: dict[str, tuple[Example, ...]] = {}
    for tab, entries in raw.items():
        loaded = []
        for entry in entries:
            values = {key: value for key, value in entry.items() if key != "label"}
            for key in IMAGE_KEYS:
                if key in values:
                    picture = (path.parent / values[key]).resolve()
                    if not picture.is_file():
                        raise FileNotFoundError(f"example picture {values[key]!r} of the {tab} tab is missing")
                    values[key] = str(picture)
            loaded.append(Example(label=str(entry.get("label") or values.get("prompt", "")), values=values))
        examples[tab] = tuple(loaded)
    return examples


Examples = Mapping[str, tuple[Example, ...]]
"""The examples of every generation tab, by tab id."""


def examples_for(micro: bool) -> dict[str, tuple[Example, ...]]:
    """The examples for the model served: the micro model's own (its colours and shapes at 64x64: the Stable
    Diffusion examples would ask it for lighthouses at 512x512), or the Stable Diffusion ones."""
    return load_examples(MICRO_EXAMPLES_FILE if micro else EXAMPLES_FILE)
