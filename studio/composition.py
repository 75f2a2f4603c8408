"""Wiring the studio's parts together from the settings, once per process (no Gradio here).

``app.py`` and the tests build the studio the same way, so what the tests exercise is what users run.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.cancellation import CancelRegistry
from studio.devices import resolve_placement
from studio.fast_paths import SpeedOptions
from studio.loading import MemoryOptions
from studio.model_manager import ModelManager
from studio.outputs import OutputStore
from studio.preview import PreviewOptions
from studio.service import StudioService
from studio.settings import Settings
from studio.validation import Limits


@dataclass(frozen=True)
class Studio:
    """The parts the web layers use: the settings, the model manager, the service and the Stop registry."""

    settings: Settings
    manager: ModelManager
    service: StudioService
    cancels: CancelRegistry


def build_studio(settings: Settings, manager: ModelManager | None = None) -> Studio:
    """The studio for ``settings``. Nothing is loaded yet: the model loads on first use."""
    if manager is None:
        manager = ModelManager(
            settings.model,
            resolve_placement(settings.device, settings.dtype),
            offline=settings.offline,
            inpaint_source=settings.inpaint_model,
            controlnet_source=settings.controlnet_model,
            cache_bytes=int(settings.cache_gb * 2**30),
            single_file_config=settings.model_config,
            allow_pickle=settings.allow_pickle,
            speed=SpeedOptions(compile=settings.compile),
            memory=MemoryOptions(
                attention_slicing=settings.attention_slicing,
                vae_slicing=settings.vae_slicing,
                vae_tiling=settings.vae_tiling,
                cpu_offload=settings.cpu_offload,
            ),
        )
    limits = Limits(
        max_batch=settings.max_batch,
        max_pixels=settings.max_pixels,
        max_steps=settings.max_steps,
        max_cells=settings.max_cells,
    )
    previews = PreviewOptions(every=settings.preview_every, mode=settings.preview_mode)
    service = StudioService(manager, limits, OutputStore(settings.outputs), previews)
    return Studio(settings=settings, manager=manager, service=service, cancels=CancelRegistry())
