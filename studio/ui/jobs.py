"""What every GPU event shares: one queue, a per-session Stop, and step progress."""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import gradio as gr
from PIL import Image

from studio.batches import Generate, run_batches
from studio.ui.zerogpu import ZERO_GPU

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio
    from studio.service import PreviewCallback, ProgressCallback

T = TypeVar("T")

GPU_QUEUE = "gpu"
"""The concurrency id of every event that runs on the GPU: they wait in one queue, one at a time."""


def owner_of(request: gr.Request | None) -> str:
    """Who a job belongs to, so that Stop stops only that browser session's (or API client's) job.

    With passwords the user's name is part of it: a Stop from another user finds no job of theirs, whatever
    session hash it carries (as REST's ``/interrupt`` stops only the caller's own job)."""
    session = (request.session_hash if request is not None else None) or "anonymous"
    user = request.username if request is not None else None
    return f"user:{user}/{session}" if user else session


def progress_reporter(progress: gr.Progress) -> ProgressCallback:
    def report(done: int, total: int) -> None:
        progress((done, total), desc="Denoising", unit="steps")

    return report


STOPPED = "⏹ Stopped. Nothing from the stopped job was kept."


def wire_stop(stop: gr.Button, event: gr.events.Dependency, notes: gr.Markdown, studio: Studio) -> None:
    """Stop interrupts this session's running job at its next step and drops its queued one.

    ``cancels=`` alone would only free the queue slot while the job ran on; the per-session flag stops it.
    """

    def stop_job(request: gr.Request) -> str:
        studio.cancels.cancel(owner_of(request))
        return STOPPED

    stop.click(stop_job, inputs=None, outputs=notes, cancels=[event], queue=False, api_visibility="private")


def stream(
    studio: Studio,
    run: Callable[[PreviewCallback | None, Callable[[], None] | None], T],
    present: Callable[[T], tuple[Any, ...]],
    outputs: int,
    cancel: threading.Event | None = None,
    heartbeat: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """Run a generation and yield what the tab shows: the live preview in the gallery while it denoises (every
    ``--preview-every`` steps), then the result.

    With previews off (and no ``heartbeat``) the generation runs right here and costs nothing extra. Otherwise it
    runs in a worker thread (in a copy of this context, so ``gr.Progress`` still reaches the browser) while this
    generator hands each preview to Gradio as it arrives. With ``heartbeat`` it also yields after every step,
    changing nothing on the page: on ZeroGPU that is when a Stop reaches the process the job runs in.

    Closing this generator (Gradio does when the job is cancelled) sets ``cancel``, so the worker stops at its next
    step instead of running on for nobody. With ``heartbeat`` (ZeroGPU) closing also waits for the worker to end, at
    most a step: ``spaces`` hands the worker process to the next request once this generator is done, and anything
    the old job still reported after that (progress) would arrive in the next one's stream.
    """
    if studio.settings.preview_every <= 0 and not heartbeat:
        yield present(run(None, None))
        return
    updates: queue.Queue[tuple[str, Any]] = queue.Queue()
    previews = studio.settings.preview_every > 0

    def work() -> None:
        try:
            on_preview = (lambda image: updates.put(("preview", image))) if previews else None
            on_step = (lambda: updates.put(("step", None))) if heartbeat else None
            updates.put(("done", run(on_preview, on_step)))
        except BaseException as error:  # handed to the handler's thread, which reports it
            updates.put(("error", error))

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
    worker.start()
    try:
        if heartbeat:  # at once: Gradio holds a stream it can close (and so stop) only after its first update
            yield unchanged_outputs(outputs)
        while True:
            kind, value = updates.get()
            if kind == "preview":
                yield preview_outputs(value, outputs)
            elif kind == "step":
                yield unchanged_outputs(outputs)
            elif kind == "error":
                raise value
            else:
                yield present(value)
                return
    except GeneratorExit:
        if cancel is not None:
            cancel.set()
            if heartbeat:
                worker.join()
        raise


def in_batches(studio: Studio, generate: Generate, count: object) -> Generate:
    """``generate`` run ``count`` times in a row (the tab's Batch count), as one result (``studio/batches.py``)."""
    return functools.partial(run_batches, generate, count=count, limits=studio.service.limits)


def run_job(
    studio: Studio,
    request: gr.Request | None,
    generate: Callable[..., T],
    job: Any,
    progress: Callable[..., None],
    present: Callable[[T], tuple[Any, ...]],
    outputs: int,
    **options: Any,
) -> Iterator[tuple[Any, ...]]:
    """One GPU job for the session behind ``request``: ``generate(job, progress=, cancel=, preview=, **options)``
    with that session's Stop flag, streamed through ``stream`` (with a heartbeat on ZeroGPU). Every generation
    tab's handler ends here."""
    with studio.cancels.job(owner_of(request)) as cancel:

        def run(preview: PreviewCallback | None, on_step: Callable[[], None] | None) -> T:
            def report(*done: int) -> None:  # (steps done, steps) or, comparing, (steps, all, cells, all cells)
                if cancel.is_set():  # stopped: the page no longer waits for this job's progress
                    return
                progress(*done)
                if on_step is not None:
                    on_step()

            return generate(job, progress=report, cancel=cancel, preview=preview, **options)

        yield from stream(studio, run, present, outputs, cancel=cancel, heartbeat=ZERO_GPU)


def preview_outputs(image: Image.Image, outputs: int) -> tuple[Any, ...]:
    """The gallery shows the preview; every other output stays as it is until the result arrives."""
    return ([(image, "Preview")], *(gr.skip() for _ in range(outputs - 1)))


def unchanged_outputs(outputs: int) -> tuple[Any, ...]:
    """An update that changes nothing: the heartbeat between steps."""
    return tuple(gr.skip() for _ in range(outputs))
