"""Who is calling: the studio's passwords (``--auth``), for the REST API and the login gate in front of every route.

Gradio guards its own routes with its login cookie. Routes the studio adds beside them are not covered by that,
so they check here, and accept what A1111 clients send: HTTP Basic credentials (A1111's ``--api-auth``; the
``webuiapi`` client's ``set_auth``), as well as the cookie of a user logged in to the studio's page. Without
``--auth`` everyone who can reach the server may call (only this machine, unless ``--allow-public``).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

Accounts = Sequence[tuple[str, str]]

CHALLENGE = {"WWW-Authenticate": 'Basic realm="Diffusion Studio"'}
_BASIC = HTTPBasic(auto_error=False, description="the user:password pairs of --auth / --auth-file")
NOT_LOGGED_IN = (
    "Not authenticated: this studio has passwords (--auth). Send HTTP Basic credentials "
    "(user:password, as for A1111's --api-auth), or log in on the studio's page first."
)


def matching_user(user: str, password: str, accounts: Accounts) -> str | None:
    """``user`` when ``user:password`` is one of ``accounts``, else None. Every account is compared, in constant
    time, so the answer's timing says nothing about which part was wrong."""
    found = None
    for known_user, known_password in accounts:
        same_user = secrets.compare_digest(user.encode(), known_user.encode())
        same_password = secrets.compare_digest(password.encode(), known_password.encode())
        if same_user and same_password:
            found = known_user
    return found


def basic_user(authorization: str | None, accounts: Accounts) -> str | None:
    """The user whose ``Authorization: Basic ...`` header matches one of ``accounts``, else None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return matching_user(user, password, accounts) if sep else None


def cookie_user(cookies: Mapping[str, str], server: Any) -> str | None:
    """The user logged in to the Gradio page whose login cookie this is, else None.

    Gradio keeps its session tokens on its server app (``tokens``, cookies named after ``cookie_id``).
    """
    cookie_id = getattr(server, "cookie_id", None)
    tokens = getattr(server, "tokens", None)
    if cookie_id is None or not isinstance(tokens, Mapping):
        return None
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    user = tokens.get(token) if token else None
    return user if isinstance(user, str) else None


class Caller:
    """A FastAPI dependency: the name of the user making the request, or None on a server without passwords.

    Answers 401 (with a Basic challenge, so browsers ask) when the studio has passwords and the request carries
    none that match.
    """

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = tuple(accounts)

    def __call__(
        self,
        request: Request,
        credentials: HTTPBasicCredentials | None = Depends(_BASIC),  # noqa: B008
    ) -> str | None:
        if not self.accounts:
            return None
        user = matching_user(credentials.username, credentials.password, self.accounts) if credentials else None
        user = user or cookie_user(request.cookies, request.app)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, NOT_LOGGED_IN, headers=CHALLENGE)
        return user
