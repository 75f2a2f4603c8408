"""What live previews cost: the same generation with previews off, every 5 steps (approx), and every 5 steps
through the VAE, beside plain diffusers, interleaved so drift in the machine hits all alike. Prints JSON.

    python bench/preview_overhead.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import diffusers
import torch
from diffusers import StableDiffusionPipeline

from bench.models import parameter_count, save_bench_model
from studio.composition import build_studio
from studio.requests import Txt2ImgRequest
from studio.schedulers import build_scheduler
from studio.settings import Settings

ROUNDS = 7
STEPS = 20
SIZE = 128
PROMPT = "a red house by the sea"


def main() -> None:
    model = save_bench_model(Path(tempfile.gettempdir()) / "diffusion-studio-bench-model")
    studios = {
        mode: build_studio(
            Settings(model=str(model), device="cpu", outputs=None, preview_every=every, preview_mode=preview)
        )
        for mode, every, preview in (("off", 0, "approx"), ("approx", 5, "approx"), ("vae", 5, "vae"))
    }
    plain = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = build_scheduler("DPM++ 2M Karras", plain.scheduler.config, [1])
    request = Txt2ImgRequest(PROMPT, width=SIZE, height=SIZE, num_inference_steps=STEPS, seed=1)

    def studio_run(mode: str) -> float:
        previews: list[object] = []
        start = time.perf_counter()
        studios[mode].service.txt2img(request, preview=previews.append)
        return time.perf_counter() - start

    def plain_run() -> float:
        start = time.perf_counter()
        plain(PROMPT, width=SIZE, height=SIZE, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(1))
        return time.perf_counter() - start

    runs: dict[str, list[float]] = {"plain_diffusers": [], "off": [], "approx": [], "vae": []}
    for name in runs:  # warm-up, not counted
        plain_run() if name == "plain_diffusers" else studio_run(name)
    for _ in range(ROUNDS):
        for name in runs:
            runs[name].append(plain_run() if name == "plain_diffusers" else studio_run(name))
    median = {name: statistics.median(times) for name, times in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "preview_overhead",
                "date": dt.date.today().isoformat(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "model_parameters": parameter_count(plain),
                "size": SIZE,
                "steps": STEPS,
                "preview_every": 5,
                "rounds": ROUNDS,
                "median_seconds": {name: round(value, 3) for name, value in median.items()},
                "overhead_vs_previews_off": {
                    "approx": round(median["approx"] / median["off"] - 1, 4),
                    "vae": round(median["vae"] / median["off"] - 1, 4),
                },
                "studio_previews_off_vs_plain_diffusers": round(median["off"] / median["plain_diffusers"] - 1, 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
