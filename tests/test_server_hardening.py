"""The server's own defences (issue 30, points 4-10), probed with raw HTTP as an outsider would.

A launched studio on loopback, with passwords for two users, answers strangers with 401 on every route but the
login form, never describes its API to them, keeps each user's sessions and jobs to that user, counts one
--max-queue over Gradio's queue and the REST API's, serves only its own cache folder, answers only its own host
names, and sends protective headers on every answer.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import quote

import gradio as gr
import gradio.networking
import httpx
import pytest
from starlette.testclient import TestClient

from studio.composition import Studio, build_studio
from studio.settings import Settings, SettingsError
from studio.ui import create_demo, launch
from studio.ui.hosts import own_names
from studio.ui.jobs import owner_of
from studio.ui.server import server_app
from studio.ui.sessions import SessionGuard, SessionOwners
from tests.conftest import make_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ACCOUNTS = (("ann", "pw-ann"), ("bob", "pw-bob"))
SMALL = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 1, "batch_size": 1}
LONGER = {**SMALL, "steps": 12}
"""Long enough that a cancel sent right after the job is queued reaches it while it waits or runs."""


@pytest.fixture(scope="module")
def locked(tiny_model: Path) -> Iterator[tuple[str, Studio, gr.Blocks]]:
    """The studio with passwords for ann and bob, launched on loopback."""
    studio = build_studio(make_settings(tiny_model, None, auth=ACCOUNTS, preview_every=0))
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{studio.settings.port}/", studio, demo
    demo.close()


@contextmanager
def logged_in(base: str, user: str, password: str) -> Iterator[httpx.Client]:
    """A client holding the login cookie, as a browser has after the login form."""
    with httpx.Client(base_url=base, timeout=120) as client:
        response = client.post("login", data={"username": user, "password": password})
        assert response.status_code == 200, response.text
        yield client


def txt2img_data(client: httpx.Client, **values: object) -> list[object]:
    """Every parameter of /txt2img in order, as a raw HTTP caller sends them: ``values``, else the defaults the
    API info lists."""
    parameters = client.get("gradio_api/info").json()["named_endpoints"]["/txt2img"]["parameters"]
    return [values.get(p["parameter_name"], p.get("parameter_default")) for p in parameters]


def result_of(client: httpx.Client, event_id: str) -> tuple[str, object]:
    """The last event and data of a /gradio_api/call job's result stream."""
    with client.stream("GET", f"gradio_api/call/txt2img/{event_id}") as stream:
        text = "".join(stream.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)\n", text)
    assert events, text
    kind, data = events[-1]
    return kind, json.loads(data)


# --- 4. the login page describes nothing ----------------------------------------------------------------


def test_the_login_page_shows_the_login_form_and_nothing_else(locked: tuple[str, Studio, gr.Blocks]) -> None:
    base = locked[0]
    page = httpx.get(base)
    assert page.status_code == 200
    assert '"auth_required":true' in page.text, "the login form is served"
    assert 'window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};' in page.text
    assert "txt2img" not in page.text and "parameter_name" not in page.text and "max_steps" not in page.text
    runs = httpx.get(base + "gradio_api/runs")
    assert runs.status_code == 401 and "txt2img" not in runs.text
    with logged_in(base, "ann", "pw-ann") as ann:
        assert "named_endpoints" in ann.get("").text, "a user's page still describes the API"


def test_a_person_logs_in_through_the_form_and_gets_the_studio(
    locked: tuple[str, Studio, gr.Blocks], browser: Browser
) -> None:
    from playwright.sync_api import expect  # only here: `pytest -m "not browser"` runs without Playwright

    from tests.browser_helpers import ask_for_a_small_picture, set_number

    page = browser.new_page()
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
    try:
        page.goto(locked[0])
        expect(page.locator("input[type=password]")).to_be_visible(timeout=60_000)
        assert page.evaluate("Object.keys(window.gradio_api_info.named_endpoints).length") == 0
        assert refused == [], "the login form loads nothing it is refused"
        page.locator("input[type=text]").first.fill("ann")
        page.locator("input[type=password]").fill("pw-ann")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#txt2img-prompt textarea")).to_be_visible(timeout=60_000)
        # Her own Stop still reaches her job through the session checks: it stops, and the next job runs.
        page.locator("#txt2img-prompt textarea").fill("a long job")
        set_number(page, "txt2img-steps", 150)
        page.locator("#txt2img-generate").click()
        expect(page.get_by_text("Denoising").first).to_be_visible(timeout=60_000)
        page.locator("#txt2img-stop").click()
        expect(page.locator("#txt2img-notes")).to_contain_text("Stopped")
        ask_for_a_small_picture(page, "txt2img", "a red circle", steps=2)
        page.locator("#txt2img-generate").click()
        expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=60_000)
    finally:
        page.close()


# --- 5. every route needs a login, but the login form ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "gradio_api/cancel", {"session_hash": "s", "fn_index": 0, "event_id": "e"}),
        ("POST", "gradio_api/reset", {"event_id": "e"}),
        ("GET", "gradio_api/heartbeat/some-session", None),
        ("GET", "gradio_api/user", None),
        ("GET", "gradio_api/token", None),
        ("GET", "gradio_api/app_id", None),
        ("GET", "gradio_api/startup-events", None),
        ("GET", "gradio_api/runs", None),
        ("POST", "gradio_api/stream/some-event", {"data": []}),
        ("GET", "gradio_api/queue/data?session_hash=some-session", None),
        ("GET", "monitoring/key", None),
        ("GET", "sdapi/v1/sd-models", None),
        ("GET", "gradio_api/mcp/sse", None),
        ("GET", "logout", None),
    ],
)
def test_every_route_answers_401_without_a_login(
    locked: tuple[str, Studio, gr.Blocks], method: str, route: str, body: object
) -> None:
    with httpx.stream(method, locked[0] + route, json=body, timeout=30) as response:
        status = response.status_code
        text = response.read().decode() if status == 401 else ""
    assert status == 401, route
    assert "--auth" in text and "txt2img" not in text


def test_the_login_form_and_its_files_are_served_without_a_login(locked: tuple[str, Studio, gr.Blocks]) -> None:
    base = locked[0]
    page = httpx.get(base).text
    scripts = re.findall(r'src="\./(assets/[^"]+\.js)"', page) + re.findall(r'href="\./(assets/[^"]+\.css)"', page)
    assert scripts
    for file in [*scripts, "favicon.ico", "manifest.json", "theme.css", "static/js/iframeResizer.contentWindow.min.js"]:
        assert httpx.get(base + file).status_code == 200, file
    assert httpx.post(base + "login", data={"username": "ann", "password": "wrong"}).status_code == 400
    assert httpx.post(base + "login", data={"username": "ann", "password": "pw-ann"}).status_code == 200


def test_a_stranger_cannot_cancel_a_users_job(locked: tuple[str, Studio, gr.Blocks]) -> None:
    base = locked[0]
    with logged_in(base, "ann", "pw-ann") as ann:
        event = ann.post(
            "gradio_api/call/txt2img",
            json={"data": txt2img_data(ann, **LONGER), "session_hash": "ann-1"},
        ).json()["event_id"]
        cancel = httpx.post(
            base + "gradio_api/cancel", json={"session_hash": "ann-1", "fn_index": 0, "event_id": event}
        )
        assert cancel.status_code == 401
        kind, data = result_of(ann, event)
    assert kind == "complete" and isinstance(data, list) and len(data[0]) == 1, (kind, data)


# --- 6. a user's sessions and jobs are theirs ------------------------------------------------------------


def test_another_users_stop_is_refused_whatever_session_hash_it_carries(
    locked: tuple[str, Studio, gr.Blocks],
) -> None:
    base, _, demo = locked
    fn_index = next(fn._id for fn in demo.fns.values() if fn.api_name == "txt2img")
    with logged_in(base, "ann", "pw-ann") as ann, logged_in(base, "bob", "pw-bob") as bob:
        event = ann.post(
            "gradio_api/call/txt2img",
            json={"data": txt2img_data(ann, **LONGER), "session_hash": "ann-2"},
        ).json()["event_id"]
        with_her_session = {"session_hash": "ann-2", "fn_index": fn_index, "event_id": event}
        with_his_session = {"session_hash": "bob-2", "fn_index": fn_index, "event_id": event}
        refused = [bob.post("gradio_api/cancel", json=body) for body in (with_her_session, with_his_session)]
        refused.append(bob.post("gradio_api/reset", json={"session_hash": "ann-2", "event_id": event}))
        refused.append(bob.get("gradio_api/queue/data", params={"session_hash": "ann-2"}))
        kind, data = result_of(ann, event)
        assert [r.status_code for r in refused] == [403] * 4
        assert "another user" in refused[0].text
        assert kind == "complete" and len(data[0]) == 1, "ann's job ran to its end"  # type: ignore[index]
        assert ann.post("gradio_api/cancel", json=with_her_session).status_code == 200, "her own cancel is hers"


def test_the_stop_flag_belongs_to_the_user_not_the_session_hash(studio: Studio) -> None:
    ann = gr.Request(username="ann", session_hash="shared-hash")
    bob = gr.Request(username="bob", session_hash="shared-hash")
    with studio.cancels.job(owner_of(ann)) as flag:
        assert not studio.cancels.cancel(owner_of(bob))
        assert not flag.is_set()
        assert studio.cancels.cancel(owner_of(ann)) and flag.is_set()
    assert owner_of(gr.Request(session_hash="s")) == "s", "without passwords a session is its own owner"


def test_the_session_guard_refuses_another_users_job_by_its_event_id() -> None:
    """A job named by its event id alone (with a session hash of the caller's own) is checked against the user
    Gradio's queue recorded for it."""

    queue = SimpleNamespace(event_ids_to_events={"ann-event": SimpleNamespace(username="ann")})
    gradio_app = SimpleNamespace(get_blocks=lambda: SimpleNamespace(_queue=queue))

    async def app(scope: dict, receive: object, send: object) -> None:  # what the guard lets through
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    guard = SessionGuard(app, SessionOwners())  # type: ignore[arg-type]

    async def as_user(scope: dict, receive: object, send: object) -> None:
        user = dict(scope["headers"]).get(b"x-user", b"").decode()
        scope["state"] = {"user": user}
        scope["app"] = gradio_app
        await guard(scope, receive, send)  # type: ignore[arg-type]

    client = TestClient(as_user)  # type: ignore[arg-type]
    body = {"session_hash": "bob-own", "fn_index": 0, "event_id": "ann-event"}
    assert client.post("/gradio_api/cancel", json=body, headers={"x-user": "bob"}).status_code == 403
    assert (
        client.post("/gradio_api/cancel", json={**body, "session_hash": "ann-own"}, headers={"x-user": "ann"}).text
        == "ok"
    )
    assert client.get("/gradio_api/heartbeat/ann-own", headers={"x-user": "bob"}).status_code == 403


# --- 7. the studio's own cache ---------------------------------------------------------------------------


def test_the_file_route_serves_only_the_studios_own_cache(server: str) -> None:
    shared = Path(tempfile.gettempdir()) / "gradio" / "another-app"
    shared.mkdir(parents=True, exist_ok=True)
    other = shared / "their-picture.txt"
    other.write_text("another app's file")
    try:
        response = httpx.get(server + "gradio_api/file=" + quote(str(other)))
        assert response.status_code == 403
        assert "another app" not in response.text
    finally:
        other.unlink()
    own = Path(os.environ["GRADIO_TEMP_DIR"])
    assert own != shared.parent and own.name.startswith("diffusion-studio-")
    assert stat.S_IMODE(own.stat().st_mode) == 0o700, "only the studio's user may read it"
    with httpx.Client(base_url=server, timeout=120) as client:
        made = client.post("gradio_api/call/txt2img", json={"data": txt2img_data(client, **SMALL)}).json()
        with client.stream("GET", f"gradio_api/call/txt2img/{made['event_id']}") as stream:
            text = "".join(stream.iter_text())
    assert str(own) in text and str(shared.parent) + "/" not in text, "results land in the studio's own cache"


def test_the_studio_cleans_its_own_cache_by_its_own_rules(locked: tuple[str, Studio, gr.Blocks]) -> None:
    from studio.ui.cache import DELETE_CACHE

    demo = locked[2]
    assert demo.delete_cache == DELETE_CACHE, "Gradio cleans this app's own files, hourly, after a day"
    assert demo.server_app.uploaded_file_dir == os.environ["GRADIO_TEMP_DIR"], "uploads land in the studio's cache"
    assert all(
        getattr(block, "GRADIO_CACHE", os.environ["GRADIO_TEMP_DIR"]) == os.environ["GRADIO_TEMP_DIR"]
        for block in demo.blocks.values()
    )


def test_only_the_process_that_made_the_cache_removes_it(tmp_path: Path) -> None:
    from studio.ui.cache import _remove_if_made_here

    folder = tmp_path / "cache"
    folder.mkdir()
    _remove_if_made_here(folder, os.getpid() + 1)  # a forked worker (ZeroGPU's) ending
    assert folder.exists()
    _remove_if_made_here(folder, os.getpid())  # the server ending
    assert not folder.exists()


# --- 8. one --max-queue ----------------------------------------------------------------------------------


def test_one_max_queue_counts_gradio_and_rest_jobs_together(locked: tuple[str, Studio, gr.Blocks]) -> None:
    base, studio, _ = locked
    waiting_elsewhere = [0]
    studio.waiting.add_line(lambda: waiting_elsewhere[0])
    waiting_elsewhere[0] = studio.settings.max_queue  # as many jobs as --max-queue wait already
    try:
        with logged_in(base, "ann", "pw-ann") as ann:
            gradio_job = ann.post("gradio_api/call/txt2img", json={"data": txt2img_data(ann, **SMALL)})
            rest_job = ann.post(
                "sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}
            )
    finally:
        waiting_elsewhere[0] = 0
    assert gradio_job.status_code == 503 and "--max-queue" in gradio_job.text
    assert rest_job.status_code == 503 and "--max-queue" in rest_job.text


def test_the_rest_queue_counts_its_waiting_jobs_in_the_shared_room() -> None:
    import asyncio

    from studio.api.progress import JobBoard, QueueFull
    from studio.waiting import WaitingRoom

    async def scenario() -> None:
        room = WaitingRoom(2)
        gradio_waiting = [1]
        room.add_line(lambda: gradio_waiting[0])
        board = JobBoard(room)
        hold = asyncio.Event()
        entered = asyncio.Event()

        async def job(owner: str) -> None:
            async with board.turn(owner):
                entered.set()
                await hold.wait()

        running = asyncio.create_task(job("a"))
        await entered.wait()
        waiting = asyncio.create_task(job("b"))
        await asyncio.sleep(0)  # b reaches the queue (a scheduling point, not a timing)
        assert room.waiting() == 2, "one waits in Gradio's line, one in the REST line"
        with pytest.raises(QueueFull, match=r"--max-queue 2"):
            async with board.turn("c"):
                pass
        hold.set()
        await asyncio.gather(running, waiting)

    with ThreadPoolExecutor(1) as apart:  # a loop of its own: the browser tests keep one running in this thread
        apart.submit(asyncio.run, scenario()).result()


# --- 9. allowed hosts ------------------------------------------------------------------------------------


def test_allowed_hosts_come_from_the_flag_or_the_environment() -> None:
    settings = Settings.from_cli(["--allowed-hosts", "Studio.Example.com, *.lan.example"], environ={})
    assert settings.allowed_hosts == ("studio.example.com", "*.lan.example")
    assert Settings.from_cli([], environ={"STUDIO_ALLOWED_HOSTS": "a.example"}).allowed_hosts == ("a.example",)
    assert Settings.from_cli([], environ={}).allowed_hosts == ()
    with pytest.raises(SettingsError, match="--allowed-hosts takes host names"):
        Settings.from_cli(["--allowed-hosts", "http://x.example/"], environ={})


@pytest.fixture(scope="module")
def listening(tiny_model: Path) -> Iterator[str]:
    """The studio as --listen --auth serves it (bound to loopback here), with the default host names."""
    studio = build_studio(make_settings(tiny_model, None, auth=ACCOUNTS, listen=True))
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    yield f"http://127.0.0.1:{studio.settings.port}/"
    demo.close()


def test_listening_answers_only_this_machines_names(listening: str) -> None:
    port = listening.rsplit(":", 1)[1].rstrip("/")
    for host in ("evil.example", f"evil.example:{port}", "rebind.attacker.test"):
        refused = httpx.get(listening, headers={"Host": host})
        assert refused.status_code == 400, host
        assert "--allowed-hosts" in refused.text
    for name in sorted(own_names()):
        host = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        assert httpx.get(listening, headers={"Host": host}).status_code == 200, name


def test_allowed_hosts_replace_the_machines_names(tiny_model: Path) -> None:
    import socket

    settings = make_settings(tiny_model, None, auth=ACCOUNTS, listen=True, allowed_hosts=("studio.example.com",))
    client = TestClient(server_app(settings, environ={}))
    assert client.get("/", headers={"Host": "studio.example.com"}).status_code != 400
    assert client.get("/", headers={"Host": "localhost:7860"}).status_code != 400, "loopback names stay"
    assert client.get("/", headers={"Host": socket.gethostname()}).status_code == 400, "only the names given"
    spaces = TestClient(server_app(settings, environ={"SPACE_HOST": "ann-studio.hf.space"}))
    assert spaces.get("/", headers={"Host": "ann-studio.hf.space"}).status_code != 400, "a Space's own host"
    wildcard = make_settings(tiny_model, None, listen=True, allow_public=True, allowed_hosts=("*.lan.example",))
    client = TestClient(server_app(wildcard, environ={}))
    assert client.get("/", headers={"Host": "pc.lan.example"}).status_code != 400
    assert client.get("/", headers={"Host": "lan.example.evil"}).status_code == 400


def test_the_share_links_host_is_answered(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gradio.networking, "setup_tunnel", lambda **kwargs: "https://abc123.gradio.live")
    studio = build_studio(make_settings(tiny_model, None, share=True, auth=ACCOUNTS))
    demo = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    try:
        local = f"http://127.0.0.1:{studio.settings.port}/"
        assert demo.share_url == "https://abc123.gradio.live"
        assert httpx.get(local, headers={"Host": "abc123.gradio.live"}).status_code == 200
        assert httpx.get(local, headers={"Host": "evil.example"}).status_code == 400
    finally:
        demo.close()


# --- 10. protective headers ------------------------------------------------------------------------------


def assert_protected(response: httpx.Response) -> None:
    assert response.headers.get("x-frame-options") == "DENY"
    assert response.headers.get("content-security-policy") == "frame-ancestors 'none'"
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "same-origin"


def test_every_answer_carries_protective_headers(server: str, locked: tuple[str, Studio, gr.Blocks]) -> None:
    for response in (
        httpx.get(server),  # the page
        httpx.get(server + "config"),  # Gradio's JSON
        httpx.get(server + "favicon.ico"),  # a file
        httpx.get(server + "gradio_api/file=/etc/passwd"),  # a refusal
        httpx.get(server, headers={"Host": "evil.example"}),  # the Host check's refusal
        httpx.get(locked[0] + "config"),  # the login gate's refusal
        httpx.get(locked[0]),  # the login page
    ):
        assert_protected(response)


def test_a_space_may_still_be_framed_by_its_own_page(tiny_model: Path) -> None:
    settings = make_settings(tiny_model, None, host="0.0.0.0")
    environ = {"SPACE_ID": "ann/studio", "SPACE_HOST": "ann-studio.hf.space"}
    response = TestClient(server_app(settings, environ=environ)).get("/", headers={"Host": "ann-studio.hf.space"})
    policy = response.headers["content-security-policy"]
    assert policy == "frame-ancestors 'self' https://huggingface.co https://ann-studio.hf.space"
    assert "x-frame-options" not in response.headers, "X-Frame-Options cannot name the Space's page"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
