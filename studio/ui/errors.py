"""The one place where exceptions become what a user sees.

``StudioError`` messages are written for users and shown as they are. Stop is not an error: the user is told
the job stopped and the outputs stay as they were. Anything else is a bug: the detail goes to the server log and
the user reads a short message without a traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from studio.errors import Cancelled, StudioError, redact

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["redact", "user_errors"]


def user_errors(outputs: int) -> Callable[[F], F]:
    """Wrap a handler with ``outputs`` outputs so that errors reach the user as messages, never tracebacks.

    ``functools.wraps`` keeps the handler's signature, which Gradio reads for the API parameter names and for
    its ``gr.Request``/``gr.Progress`` arguments.
    """

    def decorate(handler: F) -> F:
        def nothing() -> Any:
            skipped = tuple(gr.skip() for _ in range(outputs))
            return skipped if outputs != 1 else skipped[0]

        def translate(error: Exception) -> gr.Error:
            if isinstance(error, StudioError):
                log.info("%s refused: %s", handler.__name__, error)
                return gr.Error(redact(str(error)), print_exception=False)
            log.error("unexpected error in %s", handler.__name__, exc_info=error)
            return gr.Error(
                "Something went wrong on the server; the details are in its log. Try again, or report it.",
                print_exception=False,
            )

        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def streaming(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from handler(*args, **kwargs)
                except Cancelled as stopped:
                    gr.Info(str(stopped))
                    yield nothing()
                except Exception as error:
                    raise translate(error) from None

            return streaming  # type: ignore[return-value]

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except Cancelled as stopped:
                gr.Info(str(stopped))
                return nothing()
            except Exception as error:
                raise translate(error) from None

        return wrapper  # type: ignore[return-value]

    return decorate
