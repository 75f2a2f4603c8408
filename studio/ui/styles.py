"""The Styles picker under Generate: A1111's prompt styles (``studio/styles.py``), added when an image is made, or
put into the prompt boxes with 📋 to edit them there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.ui.errors import user_errors

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio


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
        allow_custom_value=True,  # the file is read again when it changes: a style added since start-up works
        label="Styles",
        visible=bool(names),
        elem_id=f"{tab}-styles",
    )
    apply = gr.Button("📋 Styles into the prompt", size="sm", visible=bool(names), elem_id=f"{tab}-apply-styles")
    return StylePicker(styles, apply)


def wire_style_picker(
    picker: StylePicker, prompt: gr.Textbox, negative: gr.Textbox, studio: Studio, *, one_per_line: bool = False
) -> None:
    """📋 writes the chosen styles into the prompt and negative prompt and clears the choice, as A1111's does;
    with ``one_per_line`` (Compare's prompts box), into each line's prompt."""

    @user_errors(outputs=3)
    def apply(text: str, negative_text: str, names: list[str] | None) -> tuple[Any, ...]:
        lines = (text or "").splitlines() if one_per_line else [text or ""]
        styled, styled_negative = studio.styles.apply_to_each(lines, negative_text or "", names)
        return "\n".join(styled), styled_negative, []

    picker.apply.click(
        apply,
        inputs=[prompt, negative, picker.styles],
        outputs=[prompt, negative, picker.styles],
        queue=False,
        api_visibility="private",
    )
