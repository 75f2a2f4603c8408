"""Safe to expose: who may connect, what is served, what may be uploaded, and what a client is told."""

import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from studio.composition import Studio, build_studio
from studio.errors import ModelLoadError, OutOfMemory
from studio.requests import Txt2ImgRequest
from studio.settings import Settings, SettingsError
from studio.ui import create_demo, launch
from studio.ui.errors import redact
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


# --- exposure --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--listen"], ["--share"], ["--host", "192.0.2.10"]])
def test_exposing_without_a_password_is_refused(flags: list[str]) -> None:
    with pytest.raises(SettingsError, match="opens the studio to other machines, and no password is set"):
        Settings.from_cli(flags, environ={}).check_exposure(on_spaces=False)


def test_exposing_with_a_password_or_allow_public_or_on_spaces_is_fine(tmp_path: Path) -> None:
    Settings.from_cli(["--listen", "--auth", "ann:pw"], environ={}).check_exposure(on_spaces=False)
    Settings.from_cli(["--listen", "--allow-public"], environ={}).check_exposure(on_spaces=False)
    Settings.from_cli(["--listen"], environ={}).check_exposure(on_spaces=True)
    auth_file = tmp_path / "users"
    auth_file.write_text("ann:pw\nbob:secret\n")
    settings = Settings.from_cli(["--share", "--auth-file", str(auth_file)], environ={})
    assert settings.auth == (("ann", "pw"), ("bob", "secret"))
    assert "secret" not in repr(settings), "passwords never reach a log"
    with pytest.raises(SettingsError, match="user:password pairs"):
        Settings.from_cli(["--auth", "justauser"], environ={})


def test_the_app_refuses_to_start_exposed_without_a_password(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "SPACE_"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--listen"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "--auth user:password" in result.stderr and "Traceback" not in result.stderr


# --- a server with passwords -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    studio = build_studio(make_settings(tiny_model, None, auth=(("ann", "pw"),)))
    demo: gr.Blocks = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{studio.settings.port}/"
    demo.close()


@pytest.mark.parametrize(
    "route", ["config", "gradio_api/info", "gradio_api/queue/status", "gradio_api/file=" + quote(str(ROOT / "app.py"))]
)
def test_every_route_needs_the_password(locked_server: str, route: str) -> None:
    response = httpx.get(locked_server + route)
    assert response.status_code in (401, 403), route
    assert "txt2img" not in response.text


def test_the_api_refuses_strangers_and_serves_users(locked_server: str) -> None:
    response = httpx.post(locked_server + "gradio_api/call/txt2img", json={"data": ["a cat"]})
    assert response.status_code in (401, 403)
    with pytest.raises(ValueError, match="(?i)log|auth|credentials"):
        Client(locked_server, verbose=False, auth=("ann", "wrong"))
    client = Client(locked_server, verbose=False, auth=("ann", "pw"))
    gallery, *_ = client.predict(
        prompt="a cat", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=64, height=64, seed=1,
        batch_size=1, api_name="/txt2img",
    )  # fmt: skip
    assert len(gallery) == 1


# --- what the open (loopback) server serves --------------------------------------------------------------


def test_dns_rebinding_hosts_are_refused(server: str) -> None:
    assert httpx.get(server, headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(server, headers={"Host": "evil.example:7860"}).status_code == 400
    assert httpx.get(server).status_code == 200
    assert httpx.get(server.replace("127.0.0.1", "localhost")).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "192.0.2.7"])  # loopback, and a LAN name as with --listen
def test_cross_origin_requests_get_no_credentials(server: str, host: str, listening_server: str) -> None:
    base = server if host == "127.0.0.1" else listening_server
    headers = {"Origin": "https://evil.example"}
    if host != "127.0.0.1":
        headers["Host"] = f"{host}:7860"
    response = httpx.get(base + "config", headers=headers)
    assert response.headers.get("access-control-allow-credentials") != "true"
    assert response.headers.get("access-control-allow-origin") not in ("https://evil.example", "*")
    preflight = httpx.options(
        base + "gradio_api/queue/join", headers={**headers, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers.get("access-control-allow-credentials") != "true"
    assert preflight.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.fixture(scope="module")
def listening_server(tiny_model: Path) -> Iterator[str]:
    """The studio as --listen --auth serves it (bound to loopback here), answering a LAN name as well."""
    settings = make_settings(tiny_model, None, auth=(("ann", "pw"),), listen=True, allowed_hosts=("192.0.2.7",))
    studio = build_studio(settings)
    demo: gr.Blocks = create_demo(studio)
    launch(demo, studio, prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    yield f"http://127.0.0.1:{studio.settings.port}/"
    demo.close()


@pytest.fixture
def secrets_on_disk(tmp_path: Path, tiny_model: Path) -> dict[str, Path]:
    env_file = Path.cwd() / ".env"
    created = not env_file.exists()
    if created:
        env_file.write_text("HF_TOKEN=hf_secretsecretsecretsecret\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    cache = Path(os.environ.get("GRADIO_TEMP_DIR", "/tmp/gradio"))
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / "studio-test-link.txt"
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    yield {"env": env_file, "secret": secret, "link": link, "model": tiny_model / "unet" / "config.json"}
    link.unlink(missing_ok=True)
    if created:
        env_file.unlink()


def traversal_urls(target: Path) -> list[str]:
    text = str(target)
    return [
        "gradio_api/file=" + text,
        "gradio_api/file=" + quote(text, safe=""),
        "gradio_api/file=" + quote(quote(text, safe=""), safe=""),
        "gradio_api/file=../../../../../../.." + text,
        "gradio_api/file=..%2F..%2F..%2F..%2F..%2F..%2F.." + quote(text, safe=""),
        "gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e" + text,
        "file=" + text,
        "gradio_api/file=//" + text.lstrip("/"),
    ]


def test_no_file_route_reaches_models_secrets_or_the_working_directory(
    server: str, secrets_on_disk: dict[str, Path]
) -> None:
    targets = [
        secrets_on_disk["env"],
        secrets_on_disk["secret"],
        secrets_on_disk["model"],
        ROOT / "app.py",
        Path("/etc/passwd"),
        secrets_on_disk["link"],  # a symlink inside Gradio's own cache that points outside it
    ]
    for target in targets:
        for url in traversal_urls(target):
            response = httpx.get(server + url)
            assert response.status_code >= 400, url
            body = response.text
            assert "TOP SECRET" not in body and "hf_secret" not in body and "root:" not in body, url
            assert "diffusers" not in body and "import" not in body, url


def test_oversized_requests_are_refused_and_the_server_keeps_serving(server: str, served_studio: Studio) -> None:
    limit = served_studio.settings.max_upload_mb * 2**20
    response = httpx.post(
        server + "gradio_api/upload", files={"files": ("big.png", b"\0" * (limit + 1024), "image/png")}
    )
    assert response.status_code == 413
    assert "--max-upload-mb" in response.text
    inline = "data:image/png;base64," + "A" * (limit + 10)
    response = httpx.post(server + "gradio_api/call/img2img", json={"data": [{"url": inline}]})
    assert response.status_code == 413
    assert httpx.get(server).status_code == 200


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels: a decompression bomb's opening."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(server: str, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(10_000, 10_000))  # 100 megapixels in a few hundred bytes
    client = Client(server, verbose=False)
    with pytest.raises(AppError, match=r"10000x10000, 100 megapixels; this studio accepts up to 50"):
        client.predict(
            image=handle_file(str(bomb)), prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7,
            strength=0.75, seed=1, batch_size=1, width=64, height=64, resize_mode="Just resize", api_name="/img2img",
        )  # fmt: skip
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(AppError, match="not an image this studio can read"):
        client.predict(
            image=handle_file(str(not_an_image)), prompt="x", negative_prompt="", sampler="Euler", steps=2,
            guidance_scale=7, strength=0.75, seed=1, batch_size=1, width=64, height=64, resize_mode="Just resize",
            api_name="/img2img",
        )  # fmt: skip
    assert httpx.get(server).status_code == 200


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "LA", "RGBA"])
def test_unusual_image_modes_are_normalised(server: str, tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"upload.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    Image.new(mode, (64, 64)).save(path)
    client = Client(server, verbose=False)
    gallery, *_ = client.predict(
        image=handle_file(str(path)), prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7,
        strength=0.75, seed=1, batch_size=1, width=64, height=64, resize_mode="Just resize", api_name="/img2img",
    )  # fmt: skip
    assert len(gallery) == 1


# --- messages --------------------------------------------------------------------------------------------


def test_messages_lose_paths_and_tokens() -> None:
    message = redact("Could not read /home/ann/models/x.safetensors with hf_abcdefghijklmnopqrstu at C:\\m\\y.ckpt")
    assert "/home" not in message and "hf_abc" not in message and "C:\\" not in message
    assert "x.safetensors" in message and "y.ckpt" in message


def test_a_client_never_sees_a_traceback_or_a_path(server: str) -> None:
    client = Client(server, verbose=False)
    with pytest.raises(AppError) as caught:
        client.predict(
            prompt="x", negative_prompt="", sampler="Euler", steps=2, guidance_scale=7, width=100, height=64, seed=1,
            batch_size=1, api_name="/txt2img",
        )  # fmt: skip
    assert "Traceback" not in str(caught.value) and "/tmp" not in str(caught.value)


def test_model_errors_name_the_model_not_its_path(tmp_path: Path) -> None:
    studio = build_studio(make_settings(tmp_path / "deep" / "folder" / "missing-model", None))
    with pytest.raises(ModelLoadError) as caught:
        studio.service.txt2img(Txt2ImgRequest("a cat", **SMALL))
    assert "'missing-model'" in str(caught.value) and str(tmp_path) not in str(caught.value)


# --- model files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_pickles_are_refused_unless_allowed(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    pickle_file = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {}}, pickle_file)
    studio = build_studio(make_settings(tiny_model, None))
    serving = studio.manager.current()
    with pytest.raises(ModelLoadError, match=f"{suffix} files are Python pickles.*--allow-pickle"):
        studio.manager.switch(str(pickle_file))
    assert studio.manager.current() is serving


def test_a_pickle_disguised_as_safetensors_fails_cleanly(tiny_model: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "innocent.safetensors"
    buffer = io.BytesIO()
    torch.save({"state_dict": {"x": torch.zeros(1)}}, buffer)
    disguised.write_bytes(buffer.getvalue())
    studio = build_studio(make_settings(tiny_model, None))
    serving = studio.manager.current()
    with pytest.raises(ModelLoadError, match="'innocent.safetensors': the file is damaged or not a Stable Diffusion"):
        studio.manager.switch(str(disguised))
    assert studio.manager.current() is serving
    assert studio.service.txt2img(Txt2ImgRequest("a cat", seed=1, **SMALL)).images


def test_folders_with_only_pickle_weights_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    unet = folder / "unet"
    state = {}
    from safetensors.torch import load_file

    for weights in unet.glob("*.safetensors"):
        state.update(load_file(weights))
        weights.unlink()
    torch.save(state, unet / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="'pickled'"):
        build_studio(make_settings(folder, None)).manager.current()
    allowed = build_studio(make_settings(folder, None, allow_pickle=True))
    assert allowed.manager.current().family == "SD 1.x"


# --- faults ----------------------------------------------------------------------------------------------


def test_out_of_memory_frees_and_explains_and_the_next_request_works(studio: Studio) -> None:
    unet = studio.manager.current().pipeline.unet

    def exhausted(*args: object, **kwargs: object) -> object:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    unet.forward = exhausted
    try:
        with pytest.raises(OutOfMemory, match="lower the size or the batch size"):
            studio.service.txt2img(Txt2ImgRequest("a cat", seed=1, batch_size=2, **SMALL))
    finally:
        del unet.forward
    assert studio.manager.extras.keys == []
    assert studio.service.txt2img(Txt2ImgRequest("a cat", seed=1, **SMALL)).images
