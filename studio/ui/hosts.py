"""Which ``Host`` names the studio answers to: a guard against DNS rebinding.

A web page elsewhere can point a name of its own at the studio's address and then call it as "its own" site (DNS
rebinding); the browser sends that name as ``Host``. So the studio answers ``400`` to any name it was not told it
has: bound to loopback, only the loopback names (as before); opened to others (``--listen``, ``--share``, a
``--host``), the names in ``--allowed-hosts``, or by default this machine's own names and addresses, the share
link's host once it exists, and on Hugging Face Spaces the Space's own host (``SPACE_HOST``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Mapping

from studio.settings import LOOPBACK_HOSTS, Settings
from studio.ui.asgi import ASGIApp, Receive, Scope, Send, answer

_ROUTE_PROBE = ("192.0.2.1", 9)
"""A documentation address (RFC 5737): connecting a UDP socket to it sends nothing, but tells which local address
the machine would use to reach other networks (its LAN address)."""


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without the port, lowercase, without a trailing dot (``[::1]:7860`` is
    ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return header.rstrip(".")


def own_names() -> set[str]:
    """This machine's names and addresses, as far as the standard library can tell without a network."""
    names = set(LOOPBACK_HOSTS)
    for name in {socket.gethostname(), socket.getfqdn()}:
        names.add(name)
        with contextlib.suppress(OSError):  # a host name that does not resolve: the name itself is still ours
            names.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            names.add(probe.getsockname()[0])
    except OSError:  # no route to other networks: only the names above
        pass
    return {host_name(name) for name in names if name}


class AllowedHosts:
    """The names the studio answers to. ``*.example.com`` allows every subdomain of example.com, and ``*`` any
    name. Names can be added after start-up (the share link's, which exists only once the tunnel is open)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names: set[str] = set()
        self._suffixes: set[str] = set()
        self._any = False
        for name in names:
            self.allow(name)

    def allow(self, name: str) -> None:
        name = name.strip().lower()
        if name == "*":
            self._any = True
        elif name.startswith("*."):
            self._suffixes.add(name[1:].rstrip("."))
        elif name:
            self._names.add(host_name(name))

    def permits(self, header: str | None) -> bool:
        if self._any:
            return True
        if not header:
            return False
        name = host_name(header)
        return name in self._names or any(name.endswith(suffix) for suffix in self._suffixes)


def allowed_hosts(settings: Settings, environ: Mapping[str, str]) -> AllowedHosts:
    """The names ``settings`` allow (see the module): loopback names always; when exposed, ``--allowed-hosts`` or
    by default this machine's own names; on Spaces also the Space's own host."""
    names: set[str] = {*LOOPBACK_HOSTS, settings.host}  # the address it is bound to is its own (Gradio calls it)
    if settings.allowed_hosts:
        names.update(settings.allowed_hosts)
    elif not settings.loopback_only:
        names.update(own_names())
    if not settings.loopback_only and environ.get("SPACE_HOST"):
        names.add(environ["SPACE_HOST"])
    return AllowedHosts(names)


class HostCheck:
    """ASGI middleware: ``400`` to requests whose ``Host`` is not one of ``hosts``."""

    def __init__(self, app: ASGIApp, hosts: AllowedHosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if self.hosts.permits(header):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        refusal = (
            f"Invalid host header: this studio does not answer to {host_name(header) or 'no name'!r}. "
            "Its operator can allow the name with --allowed-hosts."
        )
        await answer(send, 400, refusal)
