"""What every GPU event shares: one queue, a per-session Stop, and step progress."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr
from PIL import Image

from studio.composition import Studio
from studio.service import PreviewCallback, ProgressCallback

T = TypeVar("T")

GPU_QUEUE = "gpu"
"""The concurrency id of every event that runs on the GPU: they wait in one queue, one at a time."""


def owner_of(request: gr.Request | None) -> str:
    """Who a job belongs to, so that Stop stops only that browser session's (or API client's) job."""
    return (request.session_hash if request is not None else None) or "anonymous"


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
    run: Callable[[PreviewCallback | None], T],
    present: Callable[[T], tuple[Any, ...]],
    outputs: int,
) -> Iterator[tuple[Any, ...]]:
    """Run a generation and yield what the tab shows: the live preview in the gallery while it denoises (every
    ``--preview-every`` steps), then the result.

    With previews off the generation runs right here and costs nothing extra. With them on it runs in a worker
    thread (in a copy of this context, so ``gr.Progress`` still reaches the browser) while this generator hands
    each preview to Gradio as it arrives.
    """
    if studio.settings.preview_every <= 0:
        yield present(run(None))
        return
    updates: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        try:
            updates.put(("done", run(lambda image: updates.put(("preview", image)))))
        except BaseException as error:  # handed to the handler's thread, which reports it
            updates.put(("error", error))

    threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True).start()
    while True:
        kind, value = updates.get()
        if kind == "preview":
            yield preview_outputs(value, outputs)
        elif kind == "error":
            raise value
        else:
            yield present(value)
            return


def run_job(
    studio: Studio,
    request: gr.Request | None,
    generate: Callable[..., T],
    job: Any,
    progress: Callable[..., None],
    present: Callable[[T], tuple[Any, ...]],
    outputs: int,
) -> Iterator[tuple[Any, ...]]:
    """One GPU job for the session behind ``request``: ``generate(job, progress=, cancel=, preview=)`` with that
    session's Stop flag, streamed through ``stream``. Every generation tab's handler ends here."""
    with studio.cancels.job(owner_of(request)) as cancel:
        yield from stream(
            studio,
            lambda preview: generate(job, progress=progress, cancel=cancel, preview=preview),
            present,
            outputs,
        )


def preview_outputs(image: Image.Image, outputs: int) -> tuple[Any, ...]:
    """The gallery shows the preview; every other output stays as it is until the result arrives."""
    return ([(image, "Preview")], *(gr.skip() for _ in range(outputs - 1)))
