"""``--max-queue``, counted once over every way a job can wait for the GPU.

Jobs wait in two lines: Gradio's queue (the page, Gradio's API, MCP) and the REST API's own (``/sdapi/v1``). Each
line asks the room before it admits a job, and the room counts what waits in all of them, so at most
``--max-queue`` jobs wait in all, as ``--help`` says, not that many in each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WaitingRoom:
    """The one count of waiting jobs. Each line registers a function that says how many of its jobs wait."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._lines: list[Callable[[], int]] = []

    def add_line(self, waiting: Callable[[], int]) -> None:
        """Count ``waiting()`` (the jobs one line holds) from now on."""
        with self._lock:
            self._lines.append(waiting)

    def waiting(self) -> int:
        with self._lock:
            lines = list(self._lines)
        return sum(count() for count in lines)

    def full(self) -> bool:
        """Whether one more waiting job would pass ``--max-queue``."""
        return self.waiting() >= self.capacity

    def message(self) -> str:
        return f"The queue is full (--max-queue {self.capacity}); try again shortly."
