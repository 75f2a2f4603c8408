"""Protective headers on every answer: no framing by other sites, no content sniffing, no leaking referrers.

- Frames: another site must not show the studio in a frame of its own, where a click meant for its page lands on a
  Generate or Stop button (clickjacking). ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` say so. On
  Hugging Face Spaces the Space's page on huggingface.co shows the app in a frame, so there only that page and
  the Space's own host may frame it (``X-Frame-Options`` cannot name a site, so only the CSP is sent).
- ``X-Content-Type-Options: nosniff``: a file is what its content type says, never script guessed from its bytes.
- ``Referrer-Policy: same-origin``: links out of the studio do not carry its address (a share link) to others.
"""

from __future__ import annotations

from collections.abc import Mapping

from studio.ui.asgi import ASGIApp, Message, Receive, Scope, Send

Headers = tuple[tuple[bytes, bytes], ...]

SPACES_PAGE = "https://huggingface.co"
SPACES_HOSTS = "https://*.hf.space"


def protective_headers(environ: Mapping[str, str]) -> Headers:
    """The headers for this process: framing refused, except by the Space's own pages on Hugging Face Spaces."""
    common = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"))
    if environ.get("SPACE_ID"):
        space_host = environ.get("SPACE_HOST")
        own = f"https://{space_host}" if space_host else SPACES_HOSTS
        ancestors = f"frame-ancestors 'self' {SPACES_PAGE} {own}"
        return ((b"content-security-policy", ancestors.encode()), *common)
    return (
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        *common,
    )


class ProtectiveHeaders:
    """ASGI middleware: adds ``headers`` to every HTTP answer (a header the answer already has is left as is)."""

    def __init__(self, app: ASGIApp, headers: Headers) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
