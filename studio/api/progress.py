"""The REST API's own queue, and what ``GET /sdapi/v1/progress`` reports.

REST generations run one at a time, in arrival order (as in A1111), so each caller has at most one running
job: that is the one ``/interrupt`` stops and ``/progress`` describes. They then share the GPU lock with the
UI's jobs. Waiting here costs no thread; at most ``--max-queue`` jobs may wait, here and in Gradio's queue
together (``studio/waiting.py``), beyond that the caller is told the queue is full.

Each caller sees only their own job (on a server without passwords every caller is the same "anonymous"
user, which is A1111's behaviour): with passwords, one user's prompt and preview never reach another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from PIL import Image

from studio.errors import StudioError
from studio.waiting import WaitingRoom


class QueueFull(StudioError):
    """More REST requests wait than ``--max-queue`` allows."""


@dataclass
class Tracker:
    """The state of one running job, updated from the generation's callbacks (in its worker thread)."""

    owner: str
    task: str
    job_count: int
    task_id: str = ""
    """The job's id, as ``/progress`` reports it in ``current_task`` (the request's ``force_task_id``, or one
    made up in A1111's ``task(...)`` shape)."""
    started: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=lambda: dt.datetime.now().strftime("%Y%m%d%H%M%S"))
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    preview: Image.Image | None = None
    interrupted: bool = False

    def start_batch(self, index: int) -> None:
        self.job_no, self.sampling_step, self.sampling_steps = index, 0, 0

    def step(self, done: int, total: int) -> None:
        """The service's progress callback: ``done`` of ``total`` denoising steps."""
        self.sampling_step, self.sampling_steps = done, total

    def show(self, image: Image.Image) -> None:
        """The service's preview callback."""
        self.preview = image

    def fraction(self) -> float:
        """How far the whole job is, as A1111 counts it: finished batches plus the running one's steps."""
        done = self.job_no / self.job_count
        if self.sampling_steps:
            done += self.sampling_step / self.sampling_steps / self.job_count
        return min(done, 1.0)

    def eta_relative(self) -> float:
        """Seconds left, extrapolated from the time so far (0 until the first step has run)."""
        fraction = self.fraction()
        if fraction <= 0:
            return 0.0
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed / fraction - elapsed)


class JobBoard:
    """The REST queue and the running job, shared by the routes and the worker thread."""

    def __init__(self, room: WaitingRoom) -> None:
        self.room = room
        self._lock = threading.Lock()
        self._waiting: Counter[str] = Counter()
        self._running: Tracker | None = None
        self._turn: asyncio.Lock | None = None
        room.add_line(self.waiting_total)

    @asynccontextmanager
    async def turn(self, owner: str) -> AsyncIterator[None]:
        """Wait (without a thread) until no other REST job runs; refuse when too many already wait."""
        with self._lock:
            if self.room.full():  # this queue's jobs and Gradio's: one --max-queue for both
                raise QueueFull(self.room.message())
            self._waiting[owner] += 1
            if self._turn is None:
                self._turn = asyncio.Lock()  # made here, in the server's event loop
            turn = self._turn
        waiting = True
        try:
            async with turn:
                with self._lock:
                    self._waiting[owner] -= 1
                    waiting = False
                yield
        finally:
            if waiting:
                with self._lock:
                    self._waiting[owner] -= 1

    @contextmanager
    def running(self, owner: str, task: str, job_count: int, task_id: str = "") -> Iterator[Tracker]:
        tracker = Tracker(owner=owner, task=task, job_count=job_count, task_id=task_id)
        with self._lock:
            self._running = tracker
        try:
            yield tracker
        finally:
            with self._lock:
                if self._running is tracker:
                    self._running = None

    def mark_interrupted(self, owner: str) -> bool:
        """Record that ``owner`` asked to stop their running job; False when they have none."""
        with self._lock:
            if self._running is None or self._running.owner != owner:
                return False
            self._running.interrupted = True
            return True

    def running_for(self, owner: str) -> Tracker | None:
        with self._lock:
            return self._running if self._running is not None and self._running.owner == owner else None

    def waiting_total(self) -> int:
        """The REST jobs waiting their turn, everyone's (what this line adds to the waiting room). Without the
        lock: ``turn`` asks the room while holding it, and the count only changes on the server's event loop."""
        return sum(self._waiting.values())

    def waiting_for(self, owner: str) -> int:
        with self._lock:
            return self._waiting[owner]
