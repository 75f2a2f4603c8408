"""Resident memory with all four tasks used (text to image, image to image, inpainting, ControlNet) versus text to
image alone. Each measurement runs in a process of its own, so what one left behind cannot count for another;
the two kinds alternate. Prints JSON.

    python bench/task_memory.py            # the mid-size model and its ControlNet
    python bench/task_memory.py --quick    # proves it runs (tiny model)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit, machine, mib, parse_args, peak_rss_bytes, pipeline_modules, rss_bytes, storages

KINDS = ("txt2img", "all")


def measure(kind: str, quick: bool) -> dict[str, int]:
    """In this process: load the studio, use ``kind``'s tasks once each at a small size, read the memory."""
    from PIL import Image

    from bench.models import bench_models
    from studio.composition import build_studio
    from studio.requests import ControlNetRequest, Img2ImgRequest, InpaintRequest, Txt2ImgRequest
    from studio.settings import Settings

    model, controlnet = bench_models(quick)
    before_model = rss_bytes()  # the interpreter, torch, diffusers: the same whatever runs next
    studio = build_studio(Settings(model=str(model), device="cpu", outputs=None, controlnet_model=str(controlnet)))
    size = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}
    picture = studio.service.txt2img(Txt2ImgRequest("a house", **size)).images[0].image
    if kind == "all":
        studio.service.img2img(Img2ImgRequest(picture, "a house at night", **size))
        mask = Image.new("L", picture.size, 0)
        mask.paste(255, (16, 16, 48, 48))
        studio.service.inpaint(InpaintRequest(picture, mask, "a window", num_inference_steps=2, seed=1))
        studio.service.controlnet(ControlNetRequest(picture, "a house", **size))
    gc.collect()
    base = storages(pipeline_modules(studio.manager.current().pipeline))
    return {
        "rss_bytes": rss_bytes(),
        "rss_before_model_bytes": before_model,
        "peak_rss_bytes": peak_rss_bytes(),
        "base_weight_bytes": sum(base.values()),
        "extra_module_bytes": studio.manager.extras.used_bytes,
    }


def run(quick: bool) -> dict[str, object]:
    rounds = 1 if quick else 3
    readings: dict[str, list[dict[str, int]]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            command = [sys.executable, __file__, "--measure", kind] + (["--quick"] if quick else [])
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"measuring {kind} failed:\n{done.stderr[-4000:]}")
            readings[kind].append(json.loads(done.stdout))

    def median(kind: str, key: str) -> float:
        return statistics.median(reading[key] for reading in readings[kind])

    alone, everything = median("txt2img", "rss_bytes"), median("all", "rss_bytes")
    controlnet_bytes = median("all", "extra_module_bytes")
    runtime = statistics.median(reading["rss_before_model_bytes"] for kind in KINDS for reading in readings[kind])
    return {
        "benchmark": "task_memory",
        **machine(),
        "quick": quick,
        "rounds": rounds,
        "base_weight_mib": mib(median("txt2img", "base_weight_bytes")),
        "controlnet_weight_mib": mib(controlnet_bytes),
        "rss_mib": {kind: mib(median(kind, "rss_bytes")) for kind in KINDS},
        "peak_rss_mib": {kind: mib(median(kind, "peak_rss_bytes")) for kind in KINDS},
        "all_over_txt2img_ratio": round(everything / alone, 4),
        "all_over_txt2img_plus_controlnet_weights_ratio": round(everything / (alone + controlnet_bytes), 4),
        "runtime_rss_before_any_model_mib": mib(runtime),
        "model_rss_ratio_all_over_txt2img": round((everything - runtime) / (alone - runtime), 4),
        "target_ratio_at_most": 1.1,
    }


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--measure", choices=KINDS, help="(internal) measure one kind in this process")


if __name__ == "__main__":
    arguments = parse_args(__doc__.splitlines()[0], _arguments)
    if arguments.measure:
        print(json.dumps(measure(arguments.measure, arguments.quick)))
    else:
        emit(run(arguments.quick))
