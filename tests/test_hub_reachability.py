"""The micro-model fallback's question, "can the default Hub model be had?", answered whatever the HTTP library of
the installed ``huggingface_hub`` raises. No test here leaves the machine: the Hub is a closed or local loopback
port (``HF_ENDPOINT``'s constant), or its client is replaced."""

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

from studio import settings as settings_module
from studio.hub import hub_model_unavailable
from studio.micro.location import MICRO_MODEL
from studio.settings import Settings
from studio.startup import choose_model

UNCACHED = "nobody/not-in-the-cache"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs with HF_HUB_OFFLINE=1; these tests let the client try the network (loopback only)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub_at_closed_port(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")


def test_no_network_raises_the_clients_own_error_and_counts_as_unreachable(hub_at_closed_port: None) -> None:
    try:
        HfApi().model_info(UNCACHED, timeout=5)
    except Exception as error:  # whatever the installed client raises for "not reached": that is the point
        raised = error
    else:
        pytest.fail("nothing listens on the port, yet the client got an answer")
    assert not isinstance(raised, HfHubHTTPError), "the Hub was not reached, so it did not answer"
    assert type(raised).__module__.split(".")[0] != "huggingface_hub", "the HTTP library's own error, as it comes"
    reason = hub_model_unavailable(UNCACHED, offline=False, timeout_s=5)
    assert reason is not None and "cannot be downloaded" in reason and "unreachable" in reason
    assert type(raised).__name__ in reason, "the header says what went wrong"


def test_an_error_type_no_release_has_raised_counts_as_unreachable(
    online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    class TransportOfTomorrowError(Exception):
        """What a future HTTP library might raise for 'no route to host'."""

    def fail(*_args: object, **_kwargs: object) -> None:
        raise TransportOfTomorrowError("no route to host")

    monkeypatch.setattr(HfApi, "model_info", fail)
    reason = hub_model_unavailable(UNCACHED, offline=False)
    assert reason is not None and "TransportOfTomorrowError" in reason


def test_offline_mode_raised_by_the_client_counts_as_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set, but the studio not told: the library refuses with its documented OfflineModeIsEnabled."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reason = hub_model_unavailable(UNCACHED, offline=False)
    assert reason is not None and "OfflineModeIsEnabled" in reason


class _Hub(http.server.BaseHTTPRequestHandler):
    """A loopback "Hub" that answers every request with the status and headers the test sets, or never answers."""

    status = 404
    headers_out: ClassVar[dict[str, str]] = {}
    silent: threading.Event | None = None

    def do_GET(self) -> None:  # the standard library's name
        if self.silent is not None:
            self.silent.wait()  # holds the request open until the test ends: the client times out
            return
        body = b'{"error": "test"}'
        self.send_response(self.status)
        for name, value in {"Content-Type": "application/json", **self.headers_out}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def local_hub(online: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Hub]]:
    handler = type("Hub", (_Hub,), {"headers_out": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield handler
    finally:
        if handler.silent is not None:
            handler.silent.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "headers"),
    [(404, {"X-Error-Code": "RepoNotFound"}), (401, {"X-Error-Code": "GatedRepo"}), (403, {})],
    ids=["unknown", "gated", "forbidden"],
)
def test_a_hub_that_answers_about_the_repository_leaves_it_to_the_user(
    local_hub: type[_Hub], status: int, headers: dict[str, str]
) -> None:
    """Gated or unknown: the Hub was reached, the user must fix the name or the login; loading it will say how."""
    local_hub.status, local_hub.headers_out = status, headers
    with pytest.raises(HfHubHTTPError):
        HfApi().model_info(UNCACHED, timeout=5)
    assert hub_model_unavailable(UNCACHED, offline=False, timeout_s=5) is None


def test_a_hub_server_error_counts_as_cannot_download(local_hub: type[_Hub]) -> None:
    local_hub.status = 503
    reason = hub_model_unavailable(UNCACHED, offline=False, timeout_s=5)
    assert reason is not None and "HTTP 503" in reason


def test_a_hub_that_never_answers_times_out_and_counts_as_unreachable(local_hub: type[_Hub]) -> None:
    local_hub.silent = threading.Event()
    reason = hub_model_unavailable(UNCACHED, offline=False, timeout_s=0.3)
    assert reason is not None and "unreachable" in reason and "Timeout" in reason


def test_no_network_starts_on_the_micro_model_and_says_why(
    hub_at_closed_port: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "DEFAULT_MODEL", UNCACHED)
    settings = Settings.from_cli(["--device", "cpu", "--no-save"], environ={})
    assert settings.micro_fallback and not settings.offline
    source, note = choose_model(settings)
    assert source == MICRO_MODEL
    assert note is not None and UNCACHED in note and "unreachable" in note and "--model" in note
