"""Example prompts and pictures under each generation tab (``gr.Examples``): the studio's examples for the model
it serves (``Studio.examples``).

Clicking an example fills the tab's fields. On Hugging Face Spaces (``SPACE_ID`` set) an example is also generated
once, on its first click, and its result kept for every later visitor (``cache_mode="lazy"``): the examples
are fixed, seeds included, so the result would be the same each time, and nothing is generated at start-up.
Locally nothing is cached: the examples only fill the fields, and Generate makes the picture.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from studio.examples import Example


def example_rows(
    handler: Callable[..., Any], inputs: Sequence[gr.components.Component], examples: Sequence[Example]
) -> list[list[Any]]:
    """``examples`` as rows of values for ``inputs``, which are the first parameters of ``handler`` in order; a
    value an example leaves out is the widget's own default."""
    names = list(inspect.signature(handler).parameters)[: len(inputs)]
    return [
        [example.values.get(name, component.value) for name, component in zip(names, inputs, strict=True)]
        for example in examples
    ]


def add_examples(
    container: gr.blocks.BlockContext,
    tab: str,
    handler: Callable[..., Any],
    inputs: Sequence[gr.components.Component],
    outputs: Sequence[gr.components.Component],
    examples: Sequence[Example],
) -> gr.Examples | None:
    """``examples`` (those of ``tab``) at the end of ``container`` (the tab), filling ``inputs``; None when there
    are none."""
    rows = example_rows(handler, inputs, examples)
    if not rows:
        return None
    labels = [example.label for example in examples]
    on_spaces = bool(os.environ.get("SPACE_ID"))
    with container:
        return gr.Examples(
            examples=rows,
            inputs=list(inputs),
            outputs=list(outputs) if on_spaces else None,
            fn=handler if on_spaces else None,
            cache_examples=on_spaces,
            cache_mode="lazy" if on_spaces else None,
            example_labels=labels,
            label="Examples",
            elem_id=f"{tab}-examples",
        )
