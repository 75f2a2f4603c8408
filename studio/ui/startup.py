"""The web layers while the studio's libraries load (``studio/startup.py``): the page is served at once; a UI or
Gradio API request that needs the studio waits for it with a progress message; the REST routes, which are built
from the loaded studio, are held back until it has loaded and then added to the running server.

Why REST requests wait rather than being answered 503 at once: A1111 clients (webuiapi, the Krita plugin) treat
any error as a failed generation and do not retry, while a wait of seconds is what every generation costs them
anyway. A request still waiting after ``REST_WAIT_S`` gets a 503 with ``Retry-After``; if the studio could not
load at all, a 503 with the reason.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.routing import Match

from studio.api.errors import answer
from studio.startup import LOADING_MESSAGE, StartingStudio, StartupFailed

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REST_WAIT_S = 300.0
"""How long a REST request made during the load waits for it before it is answered 503 with ``Retry-After``."""
RETRY_AFTER_S = 10


def report_loading() -> None:
    """``StartingStudio.on_wait`` for the web layers: the waiting event's progress says what it waits for (it does
    nothing outside a Gradio event, for a REST request)."""
    gr.Progress()(0, desc=LOADING_MESSAGE)


class HoldUntilLoaded:
    """While the studio loads, hold each HTTP request that no route of ``app`` serves yet (the REST routes come
    with the studio), then add the routes (``add_routes``, once) and hand the request on.

    It sits innermost, after the Host check, the passwords' middleware and the body-size limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        server: FastAPI,
        studio: StartingStudio,
        add_routes: Callable[[], None],
        wait_s: float | None = None,
    ) -> None:
        self.app = app
        self.server = server
        self.studio = studio
        self.add_routes = add_routes
        self.wait_s = wait_s
        self._added = False
        self._lock = threading.Lock()

    def _served_now(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.server.router.routes)

    async def _loaded(self) -> bool:
        """Wait for the load, at most ``wait_s`` (``REST_WAIT_S`` by default), holding no thread: False when the
        wait ran out. Raises ``StartupFailed`` when the studio could not load."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def end() -> None:
            if not ended.done():
                ended.set_result(None)

        self.studio.loader.when_done(lambda: loop.call_soon_threadsafe(end))
        try:
            await asyncio.wait_for(ended, REST_WAIT_S if self.wait_s is None else self.wait_s)
        except TimeoutError:
            return False
        self.studio.loader.wait(0)  # raises StartupFailed when the load failed
        with self._lock:
            if not self._added:
                self.add_routes()
                self._added = True
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._added or self._served_now(scope):
            await self.app(scope, receive, send)
            return
        try:
            ready = await self._loaded()
        except StartupFailed as error:
            await answer(503, str(error))(scope, receive, send)
            return
        if not ready:
            busy = answer(503, f"{LOADING_MESSAGE} Try again in a few seconds.")
            busy.headers["Retry-After"] = str(RETRY_AFTER_S)
            await busy(scope, receive, send)
            return
        await self.app(scope, receive, send)


def hold_rest_until_loaded(
    server: FastAPI, studio: StartingStudio, add_routes: Callable[[], None], wait_s: float | None = None
) -> None:
    """Install ``HoldUntilLoaded`` on ``server`` (before it starts), innermost of its middleware."""
    server.user_middleware.append(
        Middleware(HoldUntilLoaded, server=server, studio=studio, add_routes=add_routes, wait_s=wait_s)
    )
