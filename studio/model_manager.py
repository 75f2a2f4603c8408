"""The model manager: the only owner of model weights, devices and the GPU.

It loads the base model once, lazily, and derives each task's pipeline from the same modules with ``from_pipe``,
so a new task costs no new weights. Every request gets its own derived pipeline and its own scheduler, because
both keep per-call state (the interrupt flag, the step index) that must not be shared between users.

Two locks, as in InvokeAI's model cache:
- ``_lock`` guards structure: loading and switching models. A failed switch leaves the old model serving.
- ``_gpu_lock`` guards runs: one generation at a time owns the device. A job keeps a reference to the modules it
  runs on, so switching models while it runs never frees weights in use.
"""

from __future__ import annotations

import enum
import gc
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
    UNet2DConditionModel,
)

from studio.devices import Placement
from studio.errors import InvalidRequest, ModelLoadError
from studio.loading import MemoryOptions, load_inpaint_unet, load_pipeline, model_family
from studio.schedulers import build_scheduler

log = logging.getLogger(__name__)

Loader = Callable[[str, Placement, bool, MemoryOptions], DiffusionPipeline]
UnetLoader = Callable[[str, Placement, bool], UNet2DConditionModel]

INPAINT_UNET_CHANNELS = 9
"""An inpainting UNet takes the noisy latents (4), the mask (1) and the masked image's latents (4)."""


class Task(enum.Enum):
    """What a pipeline is derived for; each maps to a diffusers AutoPipeline class."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


_TASK_PIPELINES = {
    Task.TXT2IMG: AutoPipelineForText2Image,
    Task.IMG2IMG: AutoPipelineForImage2Image,
    Task.INPAINT: AutoPipelineForInpainting,
}


def is_inpainting_unet(unet: UNet2DConditionModel) -> bool:
    return unet.config.in_channels == INPAINT_UNET_CHANNELS


@dataclass(frozen=True)
class LoadedModel:
    """A loaded base model and what users want to know about it."""

    source: str
    pipeline: DiffusionPipeline
    family: str
    placement: Placement

    def describe(self) -> str:
        return f"{self.source} ({self.family}, {self.placement.describe()})"


@dataclass(frozen=True)
class Job:
    """A derived pipeline for one request, and the model it runs on."""

    pipeline: DiffusionPipeline
    model: LoadedModel


class ModelManager:
    """Loads, derives and guards the pipelines. Thread-safe; every public method may be called from any thread."""

    def __init__(
        self,
        source: str,
        placement: Placement,
        *,
        offline: bool = False,
        memory: MemoryOptions | None = None,
        inpaint_source: str | None = None,
        loader: Loader = load_pipeline,
        unet_loader: UnetLoader = load_inpaint_unet,
    ) -> None:
        self._source = source
        self.inpaint_source = inpaint_source
        self._unet_loader = unet_loader
        self._inpaint_unet: UNet2DConditionModel | None = None
        self.placement = placement
        self.offline = offline
        self.memory = memory or MemoryOptions()
        self._loader = loader
        self._model: LoadedModel | None = None
        self._lock = threading.RLock()
        self._gpu_lock = threading.Lock()

    @property
    def source(self) -> str:
        """The model that serves (or will serve, once loaded)."""
        return self._source

    @property
    def loaded(self) -> LoadedModel | None:
        """The loaded model, without loading one."""
        return self._model

    def _load(self, source: str) -> LoadedModel:
        log.info("loading model %s on %s", source, self.placement.describe())
        pipeline = self._loader(source, self.placement, self.offline, self.memory)
        return LoadedModel(source, pipeline, model_family(pipeline), self.placement)

    def current(self) -> LoadedModel:
        """The base model, loaded on first use. Raises ``ModelLoadError`` (with the reason) when it cannot load."""
        with self._lock:
            if self._model is None:
                self._model = self._load(self._source)
            return self._model

    def native_resolution(self) -> int:
        """The side in pixels the loaded model was trained at (512 for SD 1.x, 1024 for SDXL)."""
        pipeline = self.current().pipeline
        return int(pipeline.unet.config.sample_size * pipeline.vae_scale_factor)

    def switch(self, source: str) -> LoadedModel:
        """Serve ``source`` from now on. If it fails to load, the model that served before keeps serving.

        Jobs already running finish on the modules they started with; those are freed once the last one ends.
        """
        with self._lock:
            if self._model is not None and self._model.source == source:
                return self._model
            try:
                model = self._load(source)
            except ModelLoadError:
                kept = self._model.source if self._model else self._source
                log.warning("switch to %s failed; %s keeps serving", source, kept)
                raise
            self._model, self._source = model, source
        gc.collect()
        if self.placement.device.type == "cuda":
            torch.cuda.empty_cache()
        return model

    def inpaint_unet(self) -> UNet2DConditionModel | None:
        """The UNet of ``--inpaint-model``, loaded once on first use (None when no inpainting model is set).

        Only the UNet is loaded: the text encoders and VAE of the base model serve it too, so a dedicated
        inpainting model costs one UNet of memory, not a second pipeline.
        """
        if self.inpaint_source is None:
            return None
        with self._lock:
            if self._inpaint_unet is None:
                log.info("loading inpainting UNet of %s", self.inpaint_source)
                unet = self._unet_loader(self.inpaint_source, self.placement, self.offline)
                if not is_inpainting_unet(unet):
                    raise ModelLoadError(
                        f"--inpaint-model {self.inpaint_source!r} is not an inpainting model: its UNet takes "
                        f"{unet.config.in_channels} input channels, an inpainting UNet takes {INPAINT_UNET_CHANNELS}."
                    )
                self._inpaint_unet = unet
            return self._inpaint_unet

    def _task_modules(self, task: Task, model: LoadedModel) -> dict[str, UNet2DConditionModel]:
        """Modules that replace the base's for ``task``: the inpainting UNet, where there is one."""
        base_unet = model.pipeline.unet
        if is_inpainting_unet(base_unet):
            if task is not Task.INPAINT:
                raise InvalidRequest(
                    f"The loaded model {model.source!r} is an inpainting model; use it in the Inpaint tab, or load a "
                    "regular model with --model (an inpainting model can serve alongside it: --inpaint-model)."
                )
            return {}
        if task is Task.INPAINT and (unet := self.inpaint_unet()) is not None:
            if unet.config.cross_attention_dim != base_unet.config.cross_attention_dim:
                raise ModelLoadError(
                    f"--inpaint-model {self.inpaint_source!r} belongs to another model family than the loaded "
                    f"{model.source!r} ({model.family}); choose an inpainting model of the same family."
                )
            return {"unet": unet}
        return {}

    @contextmanager
    def job(self, task: Task, sampler: str, seeds: Sequence[int]) -> Iterator[Job]:
        """A pipeline for ``task`` on the loaded weights, with its own ``sampler`` scheduler, holding the GPU.

        ``seeds`` are the per-image seeds (SDE samplers seed their noise from them at build time).
        """
        model = self.current()
        base = model.pipeline
        modules = self._task_modules(task, model)
        scheduler = build_scheduler(sampler, base.scheduler.config, seeds)
        # Pass the dtype: without it from_pipe casts the shared modules of the base to float32 (diffusers#12754).
        derived = _TASK_PIPELINES[task].from_pipe(base, dtype=base.dtype, scheduler=scheduler, **modules)
        derived.set_progress_bar_config(disable=True)
        with self._gpu_lock:
            yield Job(derived, model)
