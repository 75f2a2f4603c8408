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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    ControlNetModel,
    DiffusionPipeline,
    UNet2DConditionModel,
)

from studio.devices import Placement
from studio.embeddings import ModelEmbeddings, embedding_files, load_embeddings
from studio.errors import InvalidRequest, ModelLoadError
from studio.fast_paths import SpeedOptions, speed_up, speed_up_module, undo_compile, warm_up
from studio.few_step import STANDARD, GenerationDefaults, adapt_scheduler, defaults_for_pipeline
from studio.loading import (
    MemoryOptions,
    display_name,
    load_controlnet,
    load_inpaint_unet,
    load_pipeline,
    model_family,
)
from studio.lora_weights import LoraWeights
from studio.loras import AppliedLora
from studio.micro.location import MICRO_CONTROLNET, MICRO_FAMILY
from studio.module_cache import ModuleCache
from studio.schedulers import build_scheduler
from studio.schedules import AUTOMATIC

log = logging.getLogger(__name__)

Loader = Callable[..., DiffusionPipeline]
UnetLoader = Callable[[str, Placement, bool, bool], UNet2DConditionModel]
ControlNetLoader = Callable[[str, Placement, bool, bool], ControlNetModel]

DEFAULT_CONTROLNETS = {
    "SD 1.x": "lllyasviel/control_v11p_sd15_canny",
    "SD 2.x": "thibaud/controlnet-sd21-canny-diffusers",
    "SDXL": "diffusers/controlnet-canny-sdxl-1.0",
    MICRO_FAMILY: MICRO_CONTROLNET,
}
"""The canny ControlNet each model family uses when ``--controlnet-model`` is not given (the micro model's is
committed beside it, so its ControlNet tab works offline too)."""
DEFAULT_CACHE_BYTES = 4 * 2**30

INPAINT_UNET_CHANNELS = 9
"""An inpainting UNet takes the noisy latents (4), the mask (1) and the masked image's latents (4)."""


class Task(enum.Enum):
    """What a pipeline is derived for; each maps to a diffusers AutoPipeline class."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    CONTROLNET = "controlnet"


_TASK_PIPELINES = {
    Task.TXT2IMG: AutoPipelineForText2Image,
    Task.IMG2IMG: AutoPipelineForImage2Image,
    Task.INPAINT: AutoPipelineForInpainting,
    Task.CONTROLNET: AutoPipelineForText2Image,  # with a controlnet= module it derives the ControlNet pipeline
}


def _derive(
    task: Task,
    source: DiffusionPipeline,
    model: LoadedModel,
    sampler: str,
    seeds: Sequence[int],
    schedule: str = AUTOMATIC,
    **modules: torch.nn.Module,
) -> DiffusionPipeline:
    """A ``task`` pipeline over ``source``'s modules (and ``modules``), with a ``sampler`` scheduler of its own made
    from the loaded model's scheduler config, following A1111's schedule type ``schedule``."""
    base = model.pipeline
    scheduler = build_scheduler(sampler, base.scheduler.config, seeds, schedule, sdxl=model.family == "SDXL")
    # Pass the dtype: without it from_pipe casts the shared modules of the base to float32 (diffusers#12754).
    derived = _TASK_PIPELINES[task].from_pipe(source, dtype=base.dtype, scheduler=scheduler, **modules)
    derived.set_progress_bar_config(disable=True)
    return derived


def is_inpainting_unet(unet: UNet2DConditionModel) -> bool:
    return unet.config.in_channels == INPAINT_UNET_CHANNELS


@dataclass(frozen=True)
class LoadedModel:
    """A loaded base model and what users want to know about it."""

    source: str
    pipeline: DiffusionPipeline
    family: str
    placement: Placement
    defaults: GenerationDefaults = STANDARD
    """Sampler, steps and CFG the model wants (few-step models want few steps and no CFG)."""
    embeddings: ModelEmbeddings = field(default_factory=ModelEmbeddings)
    """The textual inversion embeddings of ``--embeddings-dir`` its prompts may name (added when it loaded)."""

    @property
    def upcasts_vae(self) -> bool:
        """Whether its float16 VAE decodes in float32, as diffusers' SDXL pipelines do when the config says so."""
        return self.family == "SDXL" and bool(getattr(self.pipeline.vae.config, "force_upcast", False))

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
        controlnet_source: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        speed: SpeedOptions | None = None,
        single_file_config: str | None = None,
        allow_pickle: bool = False,
        embeddings_dir: Path | None = None,
        loader: Loader = load_pipeline,
        unet_loader: UnetLoader = load_inpaint_unet,
        controlnet_loader: ControlNetLoader = load_controlnet,
    ) -> None:
        self._source = source
        self.inpaint_source = inpaint_source
        self.controlnet_source = controlnet_source
        self.single_file_config = single_file_config
        self.allow_pickle = allow_pickle
        self.embeddings_dir = embeddings_dir
        self._unet_loader = unet_loader
        self._controlnet_loader = controlnet_loader
        self.extras = ModuleCache(cache_bytes)
        self.lora_weights = LoraWeights()
        self.placement = placement
        self.offline = offline
        self.memory = memory or MemoryOptions()
        self.speed = speed or SpeedOptions()
        self.compile_seconds: dict[str, float] = {}
        """Seconds torch.compile took at each load (with --compile), by model source."""
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
        pipeline = self._loader(
            source,
            self.placement,
            self.offline,
            self.memory,
            single_file_config=self.single_file_config,
            allow_pickle=self.allow_pickle,
        )
        embeddings = load_embeddings(pipeline, embedding_files(self.embeddings_dir))
        model = LoadedModel(
            source,
            pipeline,
            model_family(pipeline),
            self.placement,
            defaults_for_pipeline(source, pipeline),
            embeddings,
        )
        adapt_scheduler(pipeline, model.defaults)
        applied = speed_up(pipeline, self.placement.device, self.speed, self.memory.attention_slicing)
        if applied:
            log.info("fast paths for %s: %s", source, ", ".join(applied))
        if self.speed.compile and not is_inpainting_unet(pipeline.unet):  # an inpainting model cannot make txt2img
            self._warm_up(model)
        return model

    def _warm_up(self, model: LoadedModel) -> None:
        """Compile for the common shape now, at load, rather than in the first user's request. When compiling
        fails here (no compiler on this machine, an unsupported device), the model serves uncompiled."""
        try:
            watch = warm_up(model.pipeline, model.defaults, model.upcasts_vae)
        except (RuntimeError, OSError, ImportError) as error:
            log.warning("torch.compile failed for %s (%s); serving it without compile", model.source, error)
            undo_compile(model.pipeline)
            return
        self.compile_seconds[model.source] = watch.seconds

    def current(self) -> LoadedModel:
        """The base model, loaded on first use. Raises ``ModelLoadError`` (with the reason) when it cannot load."""
        with self._lock:
            if self._model is None:
                self._model = self._load(self._source)
            return self._model

    def free_memory(self) -> None:
        """Give back what no one uses: cached extra modules not in a job, and the allocator's spare memory."""
        self.extras.clear()
        gc.collect()
        if self.placement.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.placement.device.type == "mps":
            torch.mps.empty_cache()

    def unload(self) -> None:
        """Drop every model (the base, cached ControlNets and inpainting UNets, LoRA files) and give the memory
        back; the next generation loads the serving model again. Waits for the running job to end first."""
        with self._gpu_lock, self._lock:
            self._model = None
            self.extras.clear()
            self.lora_weights.clear()
        self.free_memory()

    def refresh_embeddings(self) -> ModelEmbeddings | None:
        """Add the files put in ``--embeddings-dir`` since the model loaded (and retry the ones skipped), without
        reloading it; None when no model is loaded (loading reads the folder anyway). Waits for the running job,
        as the text encoders change. A file taken out stays loaded until the model loads again."""
        with self._gpu_lock, self._lock:
            model = self._model
            if model is None:
                return None
            new = [file for file in embedding_files(self.embeddings_dir) if file.name not in model.embeddings.loaded]
            embeddings = model.embeddings.adding(load_embeddings(model.pipeline, new))
            self._model = replace(model, embeddings=embeddings)
            return embeddings

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

    def controlnet_for(self, model: LoadedModel) -> str:
        """The ControlNet serving ``model``: ``--controlnet-model``, or the canny ControlNet of its family."""
        return self.controlnet_source or DEFAULT_CONTROLNETS[model.family]

    def _inpaint_unet(self) -> UNet2DConditionModel:
        assert self.inpaint_source is not None
        unet = self._unet_loader(self.inpaint_source, self.placement, self.offline, self.allow_pickle)
        speed_up_module(unet, self.placement.device, self.speed, compile_it=True)
        if not is_inpainting_unet(unet):
            raise ModelLoadError(
                f"--inpaint-model {display_name(self.inpaint_source)!r} is not an inpainting model: its UNet takes "
                f"{unet.config.in_channels} input channels, an inpainting UNet takes {INPAINT_UNET_CHANNELS}."
            )
        return unet

    def _task_modules(self, task: Task, model: LoadedModel, held: ExitStack) -> dict[str, torch.nn.Module]:
        """Modules that join the base's for ``task`` (a ControlNet, an inpainting UNet), held in the cache
        until ``held`` closes. Only the inpainting UNet of ``--inpaint-model`` is loaded, not its pipeline: the
        text encoders and VAE of the base serve it, so it costs one UNet of memory."""
        base_unet = model.pipeline.unet
        loaded = display_name(model.source)
        if is_inpainting_unet(base_unet):
            if task is not Task.INPAINT:
                raise InvalidRequest(
                    f"The loaded model {loaded!r} is an inpainting model; use it in the Inpaint tab, or load a "
                    "regular model with --model (an inpainting model can serve alongside it: --inpaint-model)."
                )
            return {}
        if task is Task.INPAINT and self.inpaint_source is not None:
            unet = held.enter_context(self.extras.use(("inpaint-unet", self.inpaint_source), self._inpaint_unet))
            if unet.config.cross_attention_dim != base_unet.config.cross_attention_dim:
                raise ModelLoadError(
                    f"--inpaint-model {display_name(self.inpaint_source)!r} belongs to another model family than the "
                    f"loaded {loaded!r} ({model.family}); choose an inpainting model of the same family."
                )
            return {"unet": unet}
        if task is Task.CONTROLNET:
            source = self.controlnet_for(model)
            controlnet = held.enter_context(
                self.extras.use(
                    ("controlnet", source),
                    lambda: speed_up_module(
                        self._controlnet_loader(source, self.placement, self.offline, self.allow_pickle),
                        self.placement.device,
                        self.speed,
                        compile_it=False,  # its conditioning scale is a float input: each value would recompile
                    ),
                )
            )
            if controlnet.config.cross_attention_dim != base_unet.config.cross_attention_dim:
                raise ModelLoadError(
                    f"The ControlNet {display_name(source)!r} was made for another model family than the loaded "
                    f"{loaded!r} ({model.family}); use a canny ControlNet for {model.family} with --controlnet-model, "
                    f"e.g. {DEFAULT_CONTROLNETS[model.family]}."
                )
            return {"controlnet": controlnet}
        return {}

    def preload(self, task: Task) -> None:
        """Load the base model and what ``task`` adds to it (its ControlNet, the ``--inpaint-model`` UNet) now,
        into the cache, instead of on the first request that needs them."""
        model = self.current()
        with ExitStack() as held:
            self._task_modules(task, model, held)

    @contextmanager
    def job(
        self,
        task: Task,
        sampler: str,
        seeds: Sequence[int],
        loras: Sequence[AppliedLora] = (),
        schedule: str = AUTOMATIC,
    ) -> Iterator[Job]:
        """A pipeline for ``task`` on the loaded weights, with its own ``sampler`` scheduler (following A1111's
        schedule type ``schedule``), holding the GPU.

        ``seeds`` are the per-image seeds (SDE samplers seed their noise from them at build time). ``loras`` are put
        on the shared modules only while this job holds the GPU, and taken off before anyone else's job runs.
        """
        model = self.current()
        with ExitStack() as held:
            modules = self._task_modules(task, model, held)
            derived = _derive(task, model.pipeline, model, sampler, seeds, schedule, **modules)
            with self._gpu_lock, self.lora_weights.applied(derived, loras, model.family):
                yield Job(derived, model)

    def image_to_image_of(
        self, job: Job, sampler: str, seeds: Sequence[int], schedule: str = AUTOMATIC
    ) -> DiffusionPipeline:
        """An image to image pipeline on the modules ``job`` runs on (its LoRAs on them), with its own ``sampler``
        scheduler: a second pass inside the same job, as the hires fix runs it after text to image. Call it only
        while ``job`` is held; it takes nothing more from the GPU than the job has."""
        return _derive(Task.IMG2IMG, job.pipeline, job.model, sampler, seeds, schedule)
