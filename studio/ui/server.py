"""Serving the studio safely: who may connect, what they may send, and how the server is launched.

- Only the names the studio has are answered (``studio/ui/hosts.py``): bound to loopback, the loopback names;
  opened to others, ``--allowed-hosts`` (by default this machine's own names, the share link's host, a Space's
  host). Any other ``Host`` gets ``400``: a web page elsewhere cannot reach the studio by pointing its own domain
  at it (DNS rebinding).
- Other sites' pages get no CORS grant at all, so they cannot call the studio with a user's login cookie, and they
  may not frame it (``studio/ui/headers.py``).
- Request bodies are capped at ``--max-upload-mb``, inline base64 images included, before anything reads them.
- Passwords (``--auth``) cover every route but the login form (``studio/ui/login_gate.py``): the UI, Gradio's
  API, the MCP server and the studio's own REST routes (which take HTTP Basic credentials too, as A1111 clients
  send them); and a user's sessions and jobs are theirs alone (``studio/ui/sessions.py``).
- Gradio's files come from the studio's own cache folder, not the one every Gradio app shares
  (``studio/ui/cache.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import gradio as gr
from fastapi import APIRouter
from gradio.route_utils import CustomCORSMiddleware
from gradio.routes import App
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from studio.settings import Settings
from studio.ui.asgi import ASGIApp, Message, Receive, Scope, Send, answer
from studio.ui.cache import serve_only_own_cache
from studio.ui.headers import ProtectiveHeaders, protective_headers
from studio.ui.hosts import AllowedHosts, HostCheck, allowed_hosts
from studio.ui.login_gate import LoginGate
from studio.ui.sessions import SessionGuard, SessionOwners

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Answer 413 to any HTTP request whose body is larger than ``max_bytes``, counting as it arrives (a
    ``Content-Length`` that says so is refused before a byte is read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        limit_mb = self.max_bytes // 2**20
        await answer(send, 413, f"Request too large: the limit is {limit_mb} MB (--max-upload-mb).")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise ValueError("request body over the limit")
            return message

        try:
            await self.app(scope, counting_receive, send)
        except ValueError:
            if not too_large:
                raise
            await self._refuse(send)


class StudioApp(App):
    """Gradio's server app without Gradio's CORS layer, which grants any site's page credentials once the studio
    is reached by a non-loopback name (with --listen); the same-origin policy of ``middleware`` governs instead.

    FastAPI's public ``/openapi.json`` is off: the REST API serves its schema behind the passwords. ``hosts`` are
    the names the Host check allows (the share link's is added once the link exists).
    """

    def __init__(self, hosts: AllowedHosts | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("openapi_url", None)
        super().__init__(**kwargs)
        self.hosts = hosts

    def build_middleware_stack(self) -> ASGIApp:
        self.user_middleware = [m for m in self.user_middleware if m.cls is not CustomCORSMiddleware]
        return super().build_middleware_stack()


def middleware(settings: Settings, hosts: AllowedHosts, environ: Mapping[str, str]) -> list[Middleware]:
    """The studio's layers, outermost first: headers on every answer (refusals too), the Host check, the body
    limit, the CORS policy, then (with passwords) the login gate and the session owners."""
    layers = [
        Middleware(ProtectiveHeaders, headers=protective_headers(environ)),
        Middleware(HostCheck, hosts=hosts),
        Middleware(BodySizeLimit, max_bytes=settings.max_upload_mb * 2**20),
        # Same-origin only: no other site's page may call the studio with a logged-in user's cookie.
        Middleware(CORSMiddleware, allow_origins=[], allow_credentials=False),
    ]
    if settings.auth:
        layers.append(Middleware(LoginGate, accounts=settings.auth))
        layers.append(Middleware(SessionGuard, owners=SessionOwners()))
    return layers


def server_app(
    settings: Settings, routers: Sequence[APIRouter] = (), environ: Mapping[str, str] | None = None
) -> StudioApp:
    """The server app, with the studio's middleware and its own routes (the REST API) beside Gradio's."""
    environ = os.environ if environ is None else environ
    hosts = allowed_hosts(settings, environ)
    app = StudioApp(hosts=hosts, middleware=middleware(settings, hosts, environ))
    for router in routers:
        app.include_router(router)
    return app


def launch_options(settings: Settings, routers: Sequence[APIRouter] = ()) -> dict[str, Any]:
    """What ``Blocks.launch`` is given, beside the theme: address, passwords, limits, middleware, routes."""
    return {
        "server_name": settings.server_name,
        "server_port": settings.port,
        "auth": list(settings.auth) or None,
        "share": settings.share,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "show_error": False,  # only our own messages (gr.Error) reach users; the rest stays in the log
        "mcp_server": settings.mcp,
        "_app": server_app(settings, routers),
    }


SHARE_FAILED = (
    "The share link could not be created (no internet, or the share server is blocked); the studio keeps "
    "serving locally at {url} (Gradio's message above says more). Run without --share to skip the attempt."
)


def launch(
    demo: gr.Blocks, settings: Settings, theme: Any, css: str, routers: Sequence[APIRouter] = (), **kwargs: Any
) -> None:
    """Serve ``demo`` (and ``routers`` beside it); blocks unless ``prevent_thread_lock=True``.

    With ``--share``, a link that cannot be made never stops the studio: Gradio gives up on the tunnel quietly
    (one printed line) and serves locally, and the studio then says so in its log, with the local address.
    """
    serve_only_own_cache(demo)
    options = {**launch_options(settings, routers), **kwargs}
    block = not options.pop("prevent_thread_lock", False)
    try:
        demo.launch(theme=theme, css=css, prevent_thread_lock=True, **options)
    except Exception as error:  # a share link that cannot be made (offline, blocked) must not stop the studio
        if not settings.share:
            raise
        log.warning("the share link could not be created (%s); serving locally only", error)
        demo.launch(theme=theme, css=css, prevent_thread_lock=True, **{**options, "share": False})
    if demo.share_url and options["_app"].hosts is not None:  # the link's requests carry its host name
        options["_app"].hosts.allow(urlparse(demo.share_url).hostname or "")
    if settings.share and demo.share_url is None:
        if demo.space_id:
            log.info("--share is not needed on Hugging Face Spaces: the Space's own address is the link to share")
        else:
            log.warning(SHARE_FAILED.format(url=demo.local_url))
    if block:
        demo.block_thread()
