"""The one place where the REST API's exceptions become HTTP answers, never tracebacks.

- A body that is not JSON the parser can read (malformed, not UTF-8, nested deeper than the parser goes): 400.
- A body of the wrong shape or type, or a value the studio refuses: 422 with ``detail`` saying what to fix.
- A model that cannot load, or a full queue: 503 with the reason (the server keeps serving).
- Out of memory: 507 with the advice. Anything else is a bug: logged, and a short 500.

Messages are scrubbed of paths and tokens like every message the studio sends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio.api.progress import QueueFull
from studio.errors import InvalidRequest, ModelLoadError, OutOfMemory, StudioError, redact

log = logging.getLogger(__name__)

UNREADABLE_BODY = (
    "The request body could not be read as JSON (malformed, not UTF-8, or nested too deeply); send one JSON object "
    "with the documented fields (see /docs)."
)

_STATUS: tuple[tuple[type[StudioError], int], ...] = (
    (InvalidRequest, 422),
    (ModelLoadError, 503),
    (QueueFull, 503),
    (OutOfMemory, 507),
    (StudioError, 500),
)


def describe(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line naming each bad field: ``steps: Input should be a valid
    integer``. The body's own location prefix is dropped; the offending value is not echoed (it may be a
    megabyte of base64)."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # the body is not JSON: say where the parser stopped, and why
            reason = (error.get("ctx") or {}).get("error", "malformed")
            position = [part for part in error.get("loc", ()) if part != "body"]
            at = f" at character {position[0]}" if position else ""
            parts.append(f"the request body is not valid JSON ({reason}{at})")
            continue
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        where = ".".join(location) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": redact(message), "error": _reason(status)}, status_code=status)


def _reason(status: int) -> str:
    return {400: "invalid request", 422: "invalid request", 503: "unavailable", 507: "out of memory"}.get(
        status, "server error"
    )


class StudioRoute(APIRoute):
    """An ``APIRoute`` whose handler turns the studio's exceptions into the answers above."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return answer(422, describe(error.errors()))
            except HTTPException:
                raise
            except StarletteHTTPException as error:
                # FastAPI's own answer when its JSON parser fails on the body (a RecursionError for deep nesting,
                # a UnicodeDecodeError): the client's error, said in the API's words.
                if error.status_code != 400:
                    raise
                log.info("%s %s refused (400): unreadable body", request.method, request.url.path)
                return answer(400, UNREADABLE_BODY)
            except StudioError as error:
                status = next(code for kind, code in _STATUS if isinstance(error, kind))
                log.info("%s %s refused (%d): %s", request.method, request.url.path, status, error)
                return answer(status, str(error))
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                return answer(500, "Something went wrong on the server; the details are in its log.")

        return route
