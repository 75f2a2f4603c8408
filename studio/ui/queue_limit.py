"""Gradio's queue counted in the studio's one ``--max-queue`` (``studio/waiting.py``).

Gradio's queue refuses jobs past its own ``max_size`` and knows nothing of the REST API's line. Here its ``push``
asks the shared waiting room first, and the room counts the jobs Gradio's queue holds, so one number covers both.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.waiting import WaitingRoom


def count_in(demo: gr.Blocks, room: WaitingRoom) -> None:
    """Make ``demo``'s queue (configured already with ``demo.queue``) share ``room``'s count.

    Gradio's queue has no hook for admission, so its ``push`` is wrapped on this one instance; a refusal takes
    Gradio's own "queue full" path (the caller gets 503 and the page says the queue is full)."""
    queue = demo._queue
    room.add_line(lambda: len(queue))
    push = queue.push

    async def push_if_room(*args: Any, **kwargs: Any) -> tuple[bool, Any, str]:
        if room.full():
            return False, room.message(), "queue_full"
        return await push(*args, **kwargs)

    queue.push = push_if_room
