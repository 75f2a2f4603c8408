"""The Styles picker under Generate: A1111's prompt styles (``studio/styles.py``), added when an image is made, or
put into the prompt boxes with 📋 to edit them there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.composition import Studio
from studio.ui.errors import user_errors


@dataclass(frozen=True)
class StylePicker:
    styles: gr.Dropdown
    apply: gr.Button


def build_style_picker(tab: str, studio: Studio) -> StylePicker:
    """The picker (hidden when the studio has no styles); call in the column of the Generate button."""
    names = studio.styles.names()
    styles = gr.Dropdown(
        names,
        value=[],
        multiselect=True,
        label="Styles",
        visible=bool(names),
        elem_id=f"{tab}-styles",
    )
    apply = gr.Button("📋 Styles into the prompt", size="sm", visible=bool(names), elem_id=f"{tab}-apply-styles")
    return StylePicker(styles, apply)


def wire_style_picker(picker: StylePicker, prompt: gr.Textbox, negative: gr.Textbox, studio: Studio) -> None:
    """📋 writes the chosen styles into the prompt and negative prompt and clears the choice, as A1111's does."""

    @user_errors(outputs=3)
    def apply(text: str, negative_text: str, names: list[str] | None) -> tuple[Any, ...]:
        styled, styled_negative = studio.styles.apply(text or "", negative_text or "", names)
        return styled, styled_negative, []

    picker.apply.click(
        apply,
        inputs=[prompt, negative, picker.styles],
        outputs=[prompt, negative, picker.styles],
        queue=False,
        api_visibility="private",
    )
