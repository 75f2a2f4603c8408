"""The passwords in front of every route: without a login, only the login form and what it needs are served.

Gradio checks its login cookie on some of its routes and not on others (``/gradio_api/cancel``, ``/reset``,
``/heartbeat/<session>``, ``/user``, ``/token``, ``/app_id``, ``/startup-events``, ``/stream/...``, the MCP
server...), and its login page embeds the description of every endpoint (``window.gradio_api_info``). Rather than
follow Gradio's list route by route, this middleware turns the rule around: with ``--auth``, a request without a
user (Gradio's login cookie, or HTTP Basic credentials as A1111 clients send them) gets ``401`` unless it asks for
the login form itself, the form's own files, or the login. The login page it lets through is stripped of the API
description.

The user it finds is left in the request's state (``request.state.user``) for the layers behind it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from starlette.requests import HTTPConnection

from studio.api.auth import CHALLENGE, NOT_LOGGED_IN, Accounts, basic_user, cookie_user
from studio.ui.asgi import ASGIApp, Message, Receive, Scope, Send, answer

LOGIN_PAGE = "/"
LOGIN_ROUTES = ("/login", "/login/")
OPEN_FILES = ("/favicon.ico", "/manifest.json", "/theme.css", "/gradio_api/theme.css", "/robots.txt", "/pwa_icon")
"""What the login form loads beside its scripts (its icon, manifest and theme)."""
OPEN_FOLDERS = ("/assets/", "/static/", "/svelte/", "/pwa_icon/")
"""Gradio's own front-end files: the same for every app, nothing of the studio's."""
BASIC_PREFIXES = ("/sdapi/", "/controlnet/", "/docs", "/openapi.json", "/gradio_api/mcp")
"""Routes called by programs that log in with HTTP Basic credentials: their 401 carries the Basic challenge (a
browser then asks for the password). Gradio's own routes get none, so the login page never pops a dialog."""

_API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.DOTALL)
"""Gradio writes the description as JSON with ``<`` escaped, so ``;</script>`` can only close the script."""
_NO_API_INFO = b'<script>window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};</script>'
"""An empty description, not none: with none the page would ask the server for one (and be refused)."""


STARTUP = "/gradio_api/startup-events"
"""Gradio's ``launch`` calls this itself, without credentials, to start its queue; it acts only once."""


def is_open(method: str, path: str, started: bool) -> bool:
    """Whether a request may be answered without a login: the login form, its files, the login itself, and
    Gradio's own start-up call until the app has started."""
    if method in ("GET", "HEAD"):
        if path == STARTUP:
            return not started
        return path == LOGIN_PAGE or path in OPEN_FILES or path.startswith(OPEN_FOLDERS)
    return method == "POST" and path in LOGIN_ROUTES


def without_api_info(page: bytes) -> bytes:
    """The login page without the description of the endpoints (Gradio embeds it for everyone)."""
    return _API_INFO.sub(_NO_API_INFO, page)


class LoginGate:
    """ASGI middleware: with ``accounts``, every request needs a user except the login form (see the module)."""

    def __init__(self, app: ASGIApp, accounts: Accounts) -> None:
        self.app = app
        self.accounts = tuple(accounts)

    def user(self, scope: Scope) -> str | None:
        connection = HTTPConnection(scope)
        user = basic_user(connection.headers.get("authorization"), self.accounts)
        return user or cookie_user(connection.cookies, scope.get("app"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.accounts:
            await self.app(scope, receive, send)
            return
        user = self.user(scope)
        scope.setdefault("state", {})["user"] = user
        if user is not None:
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        method = str(scope.get("method", "GET"))
        started = bool(getattr(scope.get("app"), "startup_events_triggered", True))
        if not is_open(method, path, started):
            await refuse(send, challenge=path.startswith(BASIC_PREFIXES))
            return
        if path == LOGIN_PAGE and method == "GET":
            await self.app(scope, receive, rewriting(send, without_api_info))
            return
        await self.app(scope, receive, send)


async def refuse(send: Send, challenge: bool) -> None:
    """``401`` with the studio's message (and a Basic challenge for the routes programs call)."""
    headers = [(b"www-authenticate", CHALLENGE["WWW-Authenticate"].encode())] if challenge else []
    await answer(send, 401, NOT_LOGGED_IN, headers)


def rewriting(send: Send, change: Callable[[bytes], bytes]) -> Send:
    """A ``send`` that holds the response back until its body is complete, then sends ``change(body)`` with the
    right length. Only for small pages (the login page): it buffers the whole body."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def send_changed(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = change(b"".join(chunks))
        headers: Sequence[tuple[bytes, bytes]] = start.get("headers", [])
        start["headers"] = [(k, v) for k, v in headers if k.lower() != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return send_changed
