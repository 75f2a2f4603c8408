"""On a server with passwords, a browser session and its jobs belong to the user who started them.

Gradio identifies a page by a random session hash and each job by an event id, and it acts on whichever it is
sent: a logged-in user who learns another's session hash or event id could cancel that user's job
(``/gradio_api/cancel``), close its session (``/gradio_api/heartbeat/<hash>``) or read its results
(``/gradio_api/queue/data?session_hash=``). This middleware, behind the login gate, ties each session hash to the
first user who uses it and each queued or running job to the user who queued it (Gradio records that), and answers
``403`` when another user names them. Without passwords every caller is the same user, as in A1111, and nothing
is checked.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from studio.ui.asgi import ASGIApp, Message, Receive, Scope, Send, answer

API = "/gradio_api/"
BODY_ROUTES = ("queue/join", "cancel", "reset", "run/", "api/", "call/")
"""Gradio routes whose JSON body may name a session hash (``session_hash``) or a job (``event_id``)."""
NOT_YOURS = (
    "This session or job belongs to another user of this studio: each user can see, stop or close only their own."
)


class SessionOwners:
    """Which user each session hash belongs to: the first user who used it. Session hashes are random, so only a
    hash that leaked can be tried by anyone else, and by then its owner has claimed it (the page opens its
    heartbeat as it loads). The oldest claims are forgotten past ``limit`` so the table cannot grow forever."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._owners: OrderedDict[str, str] = OrderedDict()
        self.limit = limit

    def claim(self, session: str, user: str) -> bool:
        """Whether ``session`` is ``user``'s: claimed now if nobody had it, refused if another user has it."""
        with self._lock:
            owner = self._owners.get(session)
            if owner is None:
                self._owners[session] = user
                while len(self._owners) > self.limit:
                    self._owners.popitem(last=False)
                return True
            self._owners.move_to_end(session)
            return owner == user


def job_owner(app: Any, event_id: str) -> str | None:
    """The user who queued Gradio's job ``event_id`` while it waits or runs; None when there is no such job.

    Gradio's queue keeps each job's ``Event`` (with its ``username``) until it finishes; it has no public way to
    ask, hence the private attribute, read defensively."""
    try:
        event = app.get_blocks()._queue.event_ids_to_events.get(event_id)
    except AttributeError:
        return None
    user = getattr(event, "username", None)
    return user if isinstance(user, str) else None


def named_in_path(path: str) -> tuple[list[str], list[str]]:
    """The session hashes and event ids a Gradio path names: ``heartbeat/<session>``,
    ``stream/<session>/<run>/...`` (media streams), ``stream/<event>`` (streamed inputs) and
    ``call/<api>/<event>`` (results)."""
    parts = path[len(API) :].split("/") if path.startswith(API) else []
    if len(parts) >= 2 and parts[0] == "heartbeat":
        return [parts[1]], []
    if len(parts) >= 4 and parts[0] == "stream":
        return [parts[1]], []
    if len(parts) >= 2 and parts[0] == "stream":
        return [], [parts[1]]
    if len(parts) >= 3 and parts[0] == "call" and parts[-1]:
        return [], [parts[-1]]
    return [], []


def named_in_body(body: bytes) -> tuple[list[str], list[str]]:
    """The ``session_hash`` and ``event_id`` of a JSON body (none when it is not a JSON object)."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):  # Gradio answers a body it cannot read; nothing to check here
        return [], []
    if not isinstance(data, dict):
        return [], []
    sessions = [data["session_hash"]] if isinstance(data.get("session_hash"), str) else []
    events = [data["event_id"]] if isinstance(data.get("event_id"), str) else []
    return sessions, events


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it on to the app as if unread."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class SessionGuard:
    """ASGI middleware: ``403`` when a logged-in user names another user's session hash or job (see the module).
    Reads the user the login gate found (``scope["state"]["user"]``)."""

    def __init__(self, app: ASGIApp, owners: SessionOwners) -> None:
        self.app = app
        self.owners = owners

    def _allowed(self, scope: Scope, user: str, sessions: list[str], events: list[str]) -> bool:
        if not all(self.owners.claim(session, user) for session in sessions):
            return False
        owners = (job_owner(scope.get("app"), event) for event in events)
        return all(owner is None or owner == user for owner in owners)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = (scope.get("state") or {}).get("user")
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not isinstance(user, str) or not path.startswith(API):
            await self.app(scope, receive, send)
            return
        sessions, events = named_in_path(path)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        sessions += query.get("session_hash", [])
        if scope.get("method") == "POST" and path[len(API) :].startswith(BODY_ROUTES):
            body, receive = await read_body(receive)
            in_body = named_in_body(body)
            sessions += in_body[0]
            events += in_body[1]
        if self._allowed(scope, user, sessions, events):
            await self.app(scope, receive, send)
            return
        await answer(send, 403, NOT_YOURS)
