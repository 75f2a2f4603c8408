"""The variation seed and "Resize seed from" widgets under a tab's seed: A1111's "Extra" box, which shows them
(``studio/variation.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.metadata import parse_parameters
from studio.requests import RANDOM_SEED


@dataclass(frozen=True)
class VariationControls:
    """ "Extra" shows the variation seed and strength and "Resize seed from"; turning it off sets the strength and
    the resize sizes to 0, so neither applies unseen."""

    extra: gr.Checkbox
    settings: gr.Column
    subseed: gr.Number
    random_subseed: gr.Button
    reuse_subseed: gr.Button | None
    """♻️: the selected image's variation seed (tabs with a gallery of images to select from)."""
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider | None = None
    seed_resize_from_h: gr.Slider | None = None

    def inputs(self) -> list[gr.components.Component]:
        """The variation seed and strength: the parameters after clip skip of each generation handler, in order."""
        return [self.subseed, self.subseed_strength]

    def seed_resize_inputs(self) -> list[gr.components.Component]:
        """ "Resize seed from" width and height: the last parameters of the four generation handlers (they came
        after the others, so positional calls of the endpoints still work)."""
        assert self.seed_resize_from_w is not None and self.seed_resize_from_h is not None
        return [self.seed_resize_from_w, self.seed_resize_from_h]


def build_extra_box(tab: str) -> gr.Checkbox:
    """The "Extra" box, for the end of the seed row."""
    return gr.Checkbox(False, label="Extra", elem_id=f"{tab}-seed-extra", scale=0, min_width=110)


def build_variation_controls(
    tab: str, extra: gr.Checkbox, *, largest_side: int, with_reuse: bool = True, with_seed_resize: bool = True
) -> VariationControls:
    """The variation settings (and "Resize seed from", up to ``largest_side``) in rows of their own below the seed
    row, shown while ``extra`` is ticked."""
    with gr.Column(visible=False, elem_id=f"{tab}-variation") as settings:
        with gr.Row(equal_height=True):
            subseed = gr.Number(
                value=RANDOM_SEED, precision=0, label="Variation seed", elem_id=f"{tab}-subseed", scale=3, min_width=120
            )
            random_subseed = gr.Button("🎲", elem_id=f"{tab}-random-subseed", scale=0, min_width=48)
            reuse_subseed = (
                gr.Button("♻️", elem_id=f"{tab}-reuse-subseed", scale=0, min_width=48) if with_reuse else None
            )
            subseed_strength = gr.Slider(
                0, 1, value=0, step=0.01, label="Variation strength", elem_id=f"{tab}-subseed-strength", scale=4
            )
        resize_w = resize_h = None
        if with_seed_resize:
            with gr.Row():
                resize_w, resize_h = (
                    gr.Slider(
                        0,
                        largest_side,
                        value=0,
                        step=8,
                        label=f"Resize seed from {side} (0: off)",
                        elem_id=f"{tab}-seed-resize-{side}",
                    )
                    for side in ("width", "height")
                )
    turned_off = [subseed_strength, *(slider for slider in (resize_w, resize_h) if slider is not None)]
    extra.change(
        lambda shown: (gr.Column(visible=shown), *(gr.skip() if shown else 0 for _ in turned_off)),
        inputs=extra,
        outputs=[settings, *turned_off],
        queue=False,
        api_visibility="private",
    )
    random_subseed.click(lambda: RANDOM_SEED, outputs=subseed, queue=False, api_visibility="private")
    return VariationControls(
        extra, settings, subseed, random_subseed, reuse_subseed, subseed_strength, resize_w, resize_h
    )


def variation_seed_of(parameters: str) -> int | None:
    """The variation seed an image's parameters text names (None when it was made without one)."""
    written = parse_parameters(parameters).fields.get("Variation seed")
    return int(written) if written is not None and written.strip().isdigit() else None
