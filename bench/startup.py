"""Time from ``python app.py`` to the first HTTP 200, beside a bare Gradio app (one textbox and a button) started
the same way; the two alternate. This is the wait before the page opens: the studio serves its page before torch,
diffusers and transformers are imported, and loads them behind it (its model loads on the first generation).

For the studio it also prints the time until it has loaded those libraries (``seconds_to_studio_loaded``): a REST
call made as soon as the page answers is held until then (``studio/ui/startup.py``), so its answer marks it. Prints
JSON.

    python bench/startup.py            # 5 starts of each
    python bench/startup.py --quick    # proves it runs (1 start of each)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, machine, parse_args, summary
from bench.models import bench_models

BARE_GRADIO = """
import sys
import gradio as gr
with gr.Blocks() as demo:
    text = gr.Textbox()
    gr.Button("Go").click(lambda value: value, text, text)
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds_to_first_200(command: list[str], port: int, loaded: list[float] | None = None) -> float:
    """Start ``command``, poll its page until it answers 200, stop it; the seconds from start to that answer. With
    ``loaded``, then ask the studio's REST API once and append the seconds from start to its answer."""
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile(mode="w+") as log:  # not a pipe: a full pipe would stall the server
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=log)
        try:
            while time.perf_counter() - start < TIMEOUT_S:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{command[1]} exited with {process.returncode}: {log.read()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                        if response.status == 200:
                            first_200 = time.perf_counter() - start
                            if loaded is not None:
                                samplers = f"http://127.0.0.1:{port}/sdapi/v1/samplers"
                                with urllib.request.urlopen(samplers, timeout=TIMEOUT_S) as answer:
                                    answer.read()
                                loaded.append(time.perf_counter() - start)
                            return first_200
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.05)
            raise RuntimeError(f"{command[1]} did not answer within {TIMEOUT_S} s")
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(quick: bool) -> dict[str, object]:
    rounds = 1 if quick else 5
    model, _ = bench_models(quick)
    times: dict[str, list[float]] = {"bare_gradio": [], "studio": []}
    loaded: list[float] = []
    for _ in range(rounds):
        port = free_port()
        times["bare_gradio"].append(seconds_to_first_200([sys.executable, "-c", BARE_GRADIO, str(port)], port))
        port = free_port()
        studio = [sys.executable, "app.py", "--model", str(model), "--device", "cpu", "--no-save", "--port", str(port)]
        times["studio"].append(seconds_to_first_200(studio, port, loaded))
    medians = {name: summary(values)["median_s"] for name, values in times.items()}
    return {
        "benchmark": "startup",
        **machine(),
        "quick": quick,
        "rounds": rounds,
        "seconds_to_first_http_200": {name: summary(values) for name, values in times.items()},
        "seconds_to_studio_loaded": summary(loaded),
        "studio_minus_bare_gradio_s": round(medians["studio"] - medians["bare_gradio"], 3),
        "studio_over_bare_gradio_ratio": round(medians["studio"] / medians["bare_gradio"], 3),
    }


if __name__ == "__main__":
    emit(run(parse_args(__doc__.splitlines()[0]).quick))
