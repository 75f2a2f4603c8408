"""Stop buttons that stop only their own job.

Gradio's ``cancels=`` frees a queue slot but cannot stop a function that is already running, and a global
interrupt flag (as in A1111) stops everyone's job. Here each caller (a browser session, an API client) owns a
``threading.Event``; the step callback checks it and interrupts the pipeline at the next step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CancelRegistry:
    """One cancel flag per running job, keyed by its owner (Gradio's session hash, say)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    @contextmanager
    def job(self, owner: str) -> Iterator[threading.Event]:
        """A fresh flag for the job ``owner`` starts now; earlier presses of Stop do not carry over."""
        event = threading.Event()
        with self._lock:
            self._events[owner] = event
        try:
            yield event
        finally:
            with self._lock:
                if self._events.get(owner) is event:
                    del self._events[owner]

    def cancel(self, owner: str) -> bool:
        """Ask ``owner``'s running job to stop; False when it has none."""
        with self._lock:
            event = self._events.get(owner)
        if event is None:
            return False
        event.set()
        return True
