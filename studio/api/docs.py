"""The OpenAPI schema (``/openapi.json``) and its Swagger page (``/docs``), where FastAPI puts them, behind the
same passwords as everything else.

FastAPI's own versions of these routes would be public, so the studio's server app turns them off and these
take their place. The schema describes the A1111-compatible routes (Gradio's own API is described at
``/gradio_api/info`` and on the page's "Use via API" link).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from studio import __version__

TITLE = "Diffusion Studio: AUTOMATIC1111-compatible API"
DESCRIPTION = (
    "The routes of AUTOMATIC1111's web UI API (`/sdapi/v1`) and of the sd-webui-controlnet extension "
    "(`/controlnet`) that Diffusion Studio answers. Unknown fields are ignored; see the README's "
    '"A1111-compatible API" section for what is supported.'
)


def add_docs(router: APIRouter) -> None:
    """Add ``/openapi.json`` and ``/docs`` to ``router``, describing the routes it has."""
    schema: dict[str, Any] = {}

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        if not schema:
            schema.update(get_openapi(title=TITLE, version=__version__, description=DESCRIPTION, routes=router.routes))
        return schema

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=TITLE)
