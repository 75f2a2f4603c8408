"""Wiring the studio's parts together from the settings, once per process (no Gradio here).

``app.py`` and the tests build the studio the same way, so what the tests exercise is what users run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from studio.cancellation import CancelRegistry
from studio.devices import resolve_placement
from studio.errors import StudioError
from studio.examples import Examples, examples_for, load_examples
from studio.fast_paths import SpeedOptions
from studio.few_step import STANDARD, GenerationDefaults, defaults_for_source
from studio.loading import MemoryOptions
from studio.loras import LoraLibrary
from studio.model_manager import ModelManager, Task
from studio.outputs import OutputStore
from studio.preview import PreviewOptions
from studio.service import StudioService
from studio.settings import Settings
from studio.sources import is_micro_model, native_side_hint
from studio.startup import DEFAULT_SIDE, choose_model
from studio.styles import StyleLibrary
from studio.system import SystemService
from studio.validation import Limits
from studio.waiting import WaitingRoom

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Studio:
    """The parts the web layers use: the settings, the model manager, the service, the Stop registry, the
    models on disk and in memory (``system``), and the count of waiting jobs."""

    settings: Settings
    manager: ModelManager
    service: StudioService
    cancels: CancelRegistry
    system: SystemService
    waiting: WaitingRoom
    """The one ``--max-queue`` count over Gradio's queue and the REST API's."""
    model_note: str | None = None
    """Why the studio serves another model than the settings name (the micro fallback), for the header."""
    native_side: int = DEFAULT_SIDE
    """The side the size sliders start at: the model's native resolution when it can be read before loading."""
    generation_defaults: GenerationDefaults = STANDARD
    """The sampler, steps and CFG the tabs open with: those of the model served (a Turbo or LCM model's own)."""
    examples: Examples = field(default_factory=load_examples)
    """The examples under the generation tabs: the micro model's own when it is the model served."""
    styles: StyleLibrary = field(default_factory=lambda: StyleLibrary(None))
    """The prompt styles (``--styles``), applied to prompts before a request is made."""


def build_studio(
    settings: Settings,
    manager: ModelManager | None = None,
    choice: tuple[str, str | None] | None = None,
    styles: StyleLibrary | None = None,
    waiting: WaitingRoom | None = None,
) -> Studio:
    """The studio for ``settings``. Nothing is loaded yet: the model loads on first use.

    ``choice`` is the model to start on and its note when ``choose_model`` has already run (``studio/startup.py``
    runs it before the page is built), ``styles`` the style library the page already lists.
    """
    if manager is not None:
        source, note = manager.source, None
    else:
        source, note = choice if choice is not None else choose_model(settings)
    if manager is None:
        manager = ModelManager(
            source,
            resolve_placement(settings.device, settings.dtype),
            offline=settings.offline,
            inpaint_source=settings.inpaint_model,
            controlnet_source=settings.controlnet_model,
            cache_bytes=int(settings.cache_gb * 2**30),
            single_file_config=settings.model_config,
            allow_pickle=settings.allow_pickle,
            embeddings_dir=settings.embeddings_folder,
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
    loras = LoraLibrary(settings.lora_folder)
    service = StudioService(manager, limits, OutputStore(settings.outputs, settings.save_format), previews, loras)
    return Studio(
        settings=settings,
        manager=manager,
        service=service,
        cancels=CancelRegistry(),
        system=SystemService(settings, manager),
        waiting=waiting if waiting is not None else WaitingRoom(settings.max_queue),
        model_note=note,
        native_side=native_side_hint(source) or DEFAULT_SIDE,
        generation_defaults=defaults_for_source(source),
        examples=examples_for(is_micro_model(source)),
        styles=styles if styles is not None else StyleLibrary(settings.styles),
    )


def load_at_startup(studio: Studio) -> None:
    """Load the weights now rather than on the first request: the base model, the ControlNet its family uses and
    the ``--inpaint-model`` UNet.

    On Hugging Face Spaces a visitor should not wait for the download, and on ZeroGPU it is required: each request
    runs in a process forked for it, so weights loaded there would be loaded again for every request. A model that
    cannot load does not stop the studio; the first generation says why, as it does elsewhere.
    """
    for task in (Task.TXT2IMG, Task.INPAINT, Task.CONTROLNET):  # the base model first: the others join it
        try:
            studio.manager.preload(task)
        except StudioError as error:  # an inpainting base model has no ControlNet, say; the rest still loads
            log.warning("loading %s weights at start-up failed: %s", task.value, error)
            if task is Task.TXT2IMG:
                return
