"""What the generation controls show for a model: its sampler, steps and CFG scale, and the side it was trained at.

The tabs open with the serving model's own settings and follow the model when it changes: switching to SD-Turbo
sets 2 steps of Euler a without CFG, switching back to an SD 1.x model sets 25 steps of DPM++ 2M Karras at CFG 7
(studio/few_step.py), switching to SDXL sets 1024x1024. Before the model loads they are read from its name and the
configs on disk (a Hub id's side is unknown until it loads: 512); once it has, from the loaded pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.few_step import STANDARD, GenerationDefaults, defaults_for_source
from studio.loading import native_side_hint
from studio.model_manager import ModelManager

DEFAULT_SIDE = 512
"""Where the size sliders start when the model's own resolution cannot be read before it loads (a Hub id)."""


@dataclass(frozen=True)
class ModelDefaults:
    """A model's sampler, steps and CFG scale (few-step models want few steps and no CFG) and its native side."""

    generation: GenerationDefaults = STANDARD
    side: int = DEFAULT_SIDE

    def describe(self) -> str:
        """E.g. "Euler a, 2 steps, CFG 0, 512x512", for the message that says what a model switch set."""
        g = self.generation
        return f"{g.sampler}, {g.num_inference_steps} steps, CFG {g.guidance_scale:g}, {self.side}x{self.side}"


def defaults_before_loading(source: str) -> ModelDefaults:
    """The defaults of the model ``source`` names, read from what is on disk without loading it."""
    return ModelDefaults(defaults_for_source(source), native_side_hint(source) or DEFAULT_SIDE)


def serving_defaults(manager: ModelManager) -> ModelDefaults:
    """The defaults of the model ``manager`` serves: from its pipeline when loaded, else from its source."""
    loaded = manager.loaded
    if loaded is None:
        return defaults_before_loading(manager.source)
    return ModelDefaults(loaded.defaults, loaded.native_resolution)
