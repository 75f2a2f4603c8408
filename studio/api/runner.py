"""Running an A1111 job on the studio: its batches one after another, with the caller's Stop flag, the
progress board, the model it asked for, and saving only when asked (as A1111's ``save_images``)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from studio.api.catalog import KnownModels, resolve_checkpoint
from studio.api.mapping import A1111Job
from studio.api.progress import JobBoard
from studio.composition import Studio
from studio.errors import Cancelled, ModelLoadError
from studio.outputs import OutputStore
from studio.requests import GenerationResult
from studio.service import StudioService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """The results of the batches that finished, and whether the caller stopped the job."""

    results: tuple[GenerationResult, ...]
    interrupted: bool
    timestamp: str = ""
    """When the job started, as A1111's ``job_timestamp`` (``YYYYmmddHHMMSS``)."""


def unsaved_service(service: StudioService) -> StudioService:
    """The same service (same model manager, limits and previews) with an output store that keeps nothing."""
    unsaved = copy.copy(service)
    unsaved.outputs = OutputStore(None)
    return unsaved


class Runner:
    def __init__(self, studio: Studio, board: JobBoard, models: KnownModels) -> None:
        self.studio = studio
        self.board = board
        self.models = models
        self._unsaved = unsaved_service(studio.service)

    def _method(self, job: A1111Job) -> Callable[..., GenerationResult]:
        service = self.studio.service if job.save_images else self._unsaved
        methods: dict[str, Callable[..., GenerationResult]] = {
            "txt2img": service.txt2img,
            "img2img": service.img2img,
            "inpaint": service.inpaint,
            "controlnet": service.controlnet,
        }
        return methods[job.task]

    def switch(self, source: str) -> None:
        """Serve ``source`` from now on; when it cannot load, it is no longer listed (and the old model serves)."""
        try:
            self.studio.manager.switch(source)
        except ModelLoadError as error:
            self.models.failed(source, str(error))
            raise
        self.models.loaded(source)

    def _generate(self, generate: Callable[..., GenerationResult], *args: object, **kwargs: object) -> GenerationResult:
        """One batch; when the serving model fails to load for it, that model is no longer listed."""
        manager = self.studio.manager
        try:
            result = generate(*args, **kwargs)
        except ModelLoadError as error:
            if manager.loaded is None:  # the model itself, not a ControlNet or inpainting UNet of it
                self.models.failed(manager.source, str(error))
            raise
        self.models.loaded(manager.source)
        return result

    @contextmanager
    def _checkpoint(self, job: A1111Job) -> Iterator[None]:
        """``override_settings.sd_model_checkpoint``: serve that model for this job, and the one before
        afterwards unless the client said not to (A1111's ``override_settings_restore_afterwards``)."""
        if job.checkpoint is None:
            yield
            return
        manager = self.studio.manager
        previous = manager.source
        wanted = resolve_checkpoint(job.checkpoint, self.models.sources())
        self.switch(wanted)
        try:
            yield
        finally:
            if job.restore_checkpoint and wanted != previous:
                self.switch(previous)

    def run(self, job: A1111Job, owner: str) -> Outcome:
        """Every batch of ``job`` for ``owner`` (call from a worker thread; it holds the GPU while it runs)."""
        generate = self._method(job)
        results: list[GenerationResult] = []
        with (
            self._checkpoint(job),
            self.studio.cancels.job(owner) as cancel,
            self.board.running(owner, job.task, job.n_iter, job.task_id) as tracker,
        ):
            for index in range(job.n_iter):
                if cancel.is_set():
                    break
                tracker.start_batch(index)
                try:
                    results.append(
                        self._generate(
                            generate, job.batch(index), progress=tracker.step, cancel=cancel, preview=tracker.show
                        )
                    )
                except Cancelled:
                    break
            interrupted = cancel.is_set()
        if interrupted:
            log.info("REST job of %s interrupted after %d of %d batches", owner, len(results), job.n_iter)
        return Outcome(tuple(results), interrupted, tracker.timestamp)
