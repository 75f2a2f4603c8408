"""The text to image tab's "Hires. fix" panel, laid out as A1111's: upscaler, hires steps, denoising strength,
upscale by, and the size it will end at, updated as the size and the factor move; the hires sampler and prompts."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.hires import MAX_SCALE, SAME_SAMPLER, UPSCALERS, target_size
from studio.requests import DEFAULT_HR_SCALE, DEFAULT_HR_STRENGTH, DEFAULT_HR_UPSCALER
from studio.schedulers import SAMPLER_NAMES
from studio.settings import Settings
from studio.ui.controls import GenerationControls


@dataclass(frozen=True)
class HiresControls:
    """The hires fix's widgets, in the order the tab handler takes their values."""

    enable: gr.Checkbox
    upscaler: gr.Dropdown
    scale: gr.Slider
    steps: gr.Slider
    strength: gr.Slider
    sampler: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox

    def inputs(self) -> list[gr.components.Component]:
        return [self.enable, self.upscaler, self.scale, self.steps, self.strength]

    def second_pass_inputs(self) -> list[gr.components.Component]:
        """The hires sampler and prompts: the handler takes them last (they came after the others), so positional
        calls of the endpoint still work."""
        return [self.sampler, self.prompt, self.negative_prompt]


def size_note(width: float | None, height: float | None, scale: float | None) -> str:
    """What A1111 shows beside its factor: the size the first pass makes and the size the fix ends at."""
    if not width or not height or not scale:
        return ""
    final = target_size(int(width), int(height), float(scale), 0, 0)
    return f"From {int(width)}x{int(height)} to {final[0]}x{final[1]}"


def build_hires_controls(tab: str, settings: Settings, controls: GenerationControls) -> HiresControls:
    """The switch, always in sight (PNG Info may turn it on), and its settings in a panel that opens when it is
    turned on; the size line follows the tab's size sliders and the factor."""
    assert controls.width is not None and controls.height is not None
    enable = gr.Checkbox(
        False,
        label="Hires. fix: draw at this size, upscale, then redraw the details",
        elem_id=f"{tab}-hires-enable",
    )
    with gr.Accordion("Hires. fix settings", open=False, elem_id=f"{tab}-hires") as panel:
        with gr.Row():
            upscaler = gr.Dropdown(
                list(UPSCALERS), value=DEFAULT_HR_UPSCALER, label="Upscaler", elem_id=f"{tab}-hires-upscaler"
            )
            scale = gr.Slider(
                1, MAX_SCALE, value=DEFAULT_HR_SCALE, step=0.05, label="Upscale by", elem_id=f"{tab}-hires-scale"
            )
        with gr.Row():
            steps = gr.Slider(
                0,
                settings.max_steps,
                value=0,
                step=1,
                label="Hires steps (0: as many as Steps)",
                elem_id=f"{tab}-hires-steps",
            )
            strength = gr.Slider(
                0,
                1,
                value=DEFAULT_HR_STRENGTH,
                step=0.01,
                label="Denoising strength",
                elem_id=f"{tab}-hires-strength",
            )
        sampler = gr.Dropdown(
            [SAME_SAMPLER, *SAMPLER_NAMES], value=SAME_SAMPLER, label="Hires sampler", elem_id=f"{tab}-hires-sampler"
        )
        prompt, negative_prompt = (
            gr.Textbox(
                "",
                label=f"Hires {which}",
                placeholder=f"The hires pass's own {which}; empty for the first pass's",
                lines=2,
                elem_id=f"{tab}-hires-{which.replace(' ', '-')}",
            )
            for which in ("prompt", "negative prompt")
        )
        note = gr.Markdown(
            size_note(controls.width.value, controls.height.value, DEFAULT_HR_SCALE), elem_id=f"{tab}-hires-size"
        )
    enable.change(
        lambda on: gr.Accordion(open=True) if on else gr.skip(),
        inputs=enable,
        outputs=panel,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    for changed in (controls.width, controls.height, scale):
        changed.change(
            size_note,
            inputs=[controls.width, controls.height, scale],
            outputs=note,
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
    return HiresControls(enable, upscaler, scale, steps, strength, sampler, prompt, negative_prompt)
