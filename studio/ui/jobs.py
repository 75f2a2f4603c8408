"""What every GPU event shares: one queue, a per-session Stop, and step progress."""

from __future__ import annotations

import gradio as gr

from studio.composition import Studio
from studio.service import ProgressCallback

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
