"""The Inpaint tab's "Soft inpainting" accordion: A1111 1.8's checkbox and its three sliders."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.soft_inpainting import ENABLED_LABEL, SETTINGS, SoftInpainting


@dataclass(frozen=True)
class SoftInpaintingControls:
    """The checkbox and the sliders, in the order the inpaint handler takes them."""

    enabled: gr.Checkbox
    schedule_bias: gr.Slider
    preservation_strength: gr.Slider
    transition_contrast: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        return [self.enabled, self.schedule_bias, self.preservation_strength, self.transition_contrast]

    @staticmethod
    def values(settings: SoftInpainting | None) -> list[object]:
        """What "Send to Inpaint" puts in: on with the image's settings, or off with the sliders as they are."""
        if settings is None:
            return [False, gr.skip(), gr.skip(), gr.skip()]
        return [True, *(getattr(settings, setting.name) for setting in SETTINGS)]


def build_soft_inpainting(tab: str) -> SoftInpaintingControls:
    with gr.Accordion(ENABLED_LABEL, open=False, elem_id=f"{tab}-soft-inpainting"):
        gr.Markdown(
            "Repaints each pixel as much as the blurred mask says, so the edges blend into the picture instead of "
            "seaming. A high **Mask blur** helps."
        )
        enabled = gr.Checkbox(False, label=ENABLED_LABEL, elem_id=f"{tab}-soft-inpainting-enabled")
        sliders = [
            gr.Slider(
                setting.minimum,
                setting.maximum,
                value=setting.default,
                step=setting.step,
                label=setting.label,
                info=setting.info,
                elem_id=f"{tab}-soft-{setting.name.replace('_', '-')}",
            )
            for setting in SETTINGS
        ]
    return SoftInpaintingControls(enabled, *sliders)
