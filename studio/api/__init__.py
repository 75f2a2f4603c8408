"""The AUTOMATIC1111-compatible REST API: a web layer over the studio's service, like ``studio/ui``.

``build_api(studio)`` gives the routes; ``studio.ui`` includes them in the studio's own server app, so they sit
behind the same passwords, Host check, CORS policy and body-size limit as the page, and run on the same model
manager (one GPU lock) as every tab.
"""

from fastapi import APIRouter

from studio.api.docs import add_docs
from studio.api.routes import build_router
from studio.composition import Studio


def build_api(studio: Studio) -> APIRouter:
    """The REST routes and their documentation for ``studio``."""
    router = build_router(studio)
    add_docs(router)
    return router


__all__ = ["build_api"]
