"""The AUTOMATIC1111-compatible REST API: a web layer over the studio's service, like ``studio/ui``.

``build_api(studio)`` gives the routes; ``studio.ui`` includes them in the studio's own server app, so they sit
behind the same passwords, Host check, CORS policy and body-size limit as the page, and run on the same model
manager (one GPU lock) as every tab.

``build_api`` is imported on first use, so that the server's light parts (``studio.api.auth``) can be imported
while the page is built, before torch loads (``studio/startup.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

    from studio.composition import Studio


def build_api(studio: Studio) -> APIRouter:
    """The REST routes and their documentation for ``studio``."""
    from studio.api.docs import add_docs
    from studio.api.routes import build_router

    router = build_router(studio)
    add_docs(router)
    return router


__all__ = ["build_api"]
