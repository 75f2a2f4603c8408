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
from studio.errors import Cancelled
from studio.outputs import OutputStore
from studio.requests import GenerationResult
from studio.service import StudioService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """The results of the batches that finished, and whether the caller stopped the job."""

    results: tuple[GenerationResult, ...]
    interrupted: bool


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
        manager.switch(wanted)
        try:
            yield
        finally:
            if job.restore_checkpoint and wanted != previous:
                manager.switch(previous)

    def run(self, job: A1111Job, owner: str) -> Outcome:
        """Every batch of ``job`` for ``owner`` (call from a worker thread; it holds the GPU while it runs)."""
        generate = self._method(job)
        results: list[GenerationResult] = []
        with (
            self._checkpoint(job),
            self.studio.cancels.job(owner) as cancel,
            self.board.running(owner, job.task, job.n_iter) as tracker,
        ):
            for index in range(job.n_iter):
                if cancel.is_set():
                    break
                tracker.start_batch(index)
                try:
                    results.append(
                        generate(job.batch(index), progress=tracker.step, cancel=cancel, preview=tracker.show)
                    )
                except Cancelled:
                    break
            interrupted = cancel.is_set()
        if interrupted:
            log.info("REST job of %s interrupted after %d of %d batches", owner, len(results), job.n_iter)
        return Outcome(tuple(results), interrupted)
