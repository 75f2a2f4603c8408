"""What it costs to derive image to image, inpainting and ControlNet once text to image is loaded: time, and new
weight bytes (counted by storage address: a module shared with the base adds nothing). Beside it, what bare
diffusers users do instead: ``from_pipe`` (the same sharing) and ``from_pretrained`` again (a second copy).
Prints JSON.

    python bench/task_derivation.py            # the mid-size model and its ControlNet
    python bench/task_derivation.py --quick    # proves it runs (tiny model)
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from bench.common import emit, machine, mib, parse_args, pipeline_modules, rss_bytes, storages
from bench.models import bench_models, parameter_count
from studio.composition import build_studio
from studio.model_manager import Task
from studio.requests import Txt2ImgRequest
from studio.settings import Settings

TASKS = (Task.IMG2IMG, Task.INPAINT, Task.CONTROLNET)
SAMPLER = "DPM++ 2M Karras"


def run(quick: bool) -> dict[str, object]:
    repeats = 2 if quick else 20
    model, controlnet = bench_models(quick)
    studio = build_studio(Settings(model=str(model), device="cpu", outputs=None, controlnet_model=str(controlnet)))
    studio.service.txt2img(Txt2ImgRequest("a house", width=64, height=64, num_inference_steps=2, seed=1))
    base = studio.manager.current().pipeline
    base_storages = storages(pipeline_modules(base))
    tasks: dict[str, object] = {}
    for task in TASKS:
        rss_before = rss_bytes()
        seconds = []
        new_bytes = extra_module_bytes = 0
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            with studio.manager.job(task, SAMPLER, [1]) as job:
                seconds.append(time.perf_counter() - start)
                derived = storages(pipeline_modules(job.pipeline))
                extra = storages([job.pipeline.controlnet]) if task is Task.CONTROLNET else {}
                new = {address: size for address, size in derived.items() if address not in base_storages}
                new_bytes = sum(size for address, size in new.items() if address not in extra)
                extra_module_bytes = sum(extra.values())
        tasks[task.value] = {
            "first_ms": round(seconds[0] * 1000, 2),
            "again_median_ms": round(statistics.median(seconds[1:]) * 1000, 2),
            "new_weight_bytes_beyond_its_own_modules": new_bytes,
            "own_module_bytes": extra_module_bytes,
            "rss_growth_mib": mib(rss_bytes() - rss_before),
        }
    return {
        "benchmark": "task_derivation",
        **machine(),
        "quick": quick,
        "model_parameters": parameter_count(base),
        "base_weight_bytes": sum(base_storages.values()),
        "repeats": repeats,
        "studio": tasks,
        "target": "<= 20 ms and 0 new bytes per derivation (a ControlNet brings only its own weights)",
        "bare_diffusers": _bare(model, repeats),
    }


def _bare(model: Path, repeats: int) -> dict[str, object]:
    """The same derivations in bare diffusers: from_pipe (shares), and from_pretrained (loads another copy)."""
    bare = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    base = storages(pipeline_modules(bare))
    found: dict[str, object] = {}
    classes = {"img2img": StableDiffusionImg2ImgPipeline, "inpaint": StableDiffusionInpaintPipeline}
    for name, pipeline_class in classes.items():
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            derived = pipeline_class.from_pipe(bare)
            seconds.append(time.perf_counter() - start)
        shared = sum(size for address, size in storages(pipeline_modules(derived)).items() if address not in base)
        start = time.perf_counter()
        loaded = pipeline_class.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
        load_seconds = time.perf_counter() - start
        found[name] = {
            "from_pipe_median_ms": round(statistics.median(seconds) * 1000, 2),
            "from_pipe_new_bytes": shared,
            "from_pretrained_ms": round(load_seconds * 1000, 1),
            "from_pretrained_new_bytes": sum(storages(pipeline_modules(loaded)).values()),
        }
        del loaded
    return found


if __name__ == "__main__":
    emit(run(parse_args(__doc__.splitlines()[0]).quick))
