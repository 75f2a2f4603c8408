"""The variation seed widgets under a tab's seed: A1111's "Extra" box, which shows them (``studio/variation.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.metadata import parse_parameters
from studio.requests import RANDOM_SEED


@dataclass(frozen=True)
class VariationControls:
    """ "Extra" shows the variation seed and strength; turning it off sets the strength to 0, so a variation never
    applies unseen."""

    extra: gr.Checkbox
    settings: gr.Row
    subseed: gr.Number
    random_subseed: gr.Button
    reuse_subseed: gr.Button | None
    """♻️: the selected image's variation seed (tabs with a gallery of images to select from)."""
    subseed_strength: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        """The variation seed and strength: the parameters after clip skip of each generation handler, in order."""
        return [self.subseed, self.subseed_strength]


def build_extra_box(tab: str) -> gr.Checkbox:
    """The "Extra" box, for the end of the seed row."""
    return gr.Checkbox(False, label="Extra", elem_id=f"{tab}-seed-extra", scale=0, min_width=110)


def build_variation_controls(tab: str, extra: gr.Checkbox, *, with_reuse: bool = True) -> VariationControls:
    """The variation settings, in a row of their own below the seed row, shown while ``extra`` is ticked."""
    with gr.Row(visible=False, equal_height=True, elem_id=f"{tab}-variation") as settings:
        subseed = gr.Number(
            value=RANDOM_SEED, precision=0, label="Variation seed", elem_id=f"{tab}-subseed", scale=3, min_width=120
        )
        random_subseed = gr.Button("🎲", elem_id=f"{tab}-random-subseed", scale=0, min_width=48)
        reuse_subseed = gr.Button("♻️", elem_id=f"{tab}-reuse-subseed", scale=0, min_width=48) if with_reuse else None
        subseed_strength = gr.Slider(
            0, 1, value=0, step=0.01, label="Variation strength", elem_id=f"{tab}-subseed-strength", scale=4
        )
    extra.change(
        lambda shown: (gr.Row(visible=shown), gr.skip() if shown else 0),
        inputs=extra,
        outputs=[settings, subseed_strength],
        queue=False,
        api_visibility="private",
    )
    random_subseed.click(lambda: RANDOM_SEED, outputs=subseed, queue=False, api_visibility="private")
    return VariationControls(extra, settings, subseed, random_subseed, reuse_subseed, subseed_strength)


def variation_seed_of(parameters: str) -> int | None:
    """The variation seed an image's parameters text names (None when it was made without one)."""
    written = parse_parameters(parameters).fields.get("Variation seed")
    return int(written) if written is not None and written.strip().isdigit() else None
