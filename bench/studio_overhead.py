"""The studio's overhead over bare diffusers: the same model, sampler, steps, size and seed through the studio's
service and through a StableDiffusionPipeline, interleaved A/B. Prints JSON.

    python bench/studio_overhead.py            # the mid-size model (47 M parameters), 128x128, 20 steps
    python bench/studio_overhead.py --quick    # proves it runs (tiny model)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

from bench.common import emit, interleaved, machine, parse_args, summary
from bench.models import bench_models, parameter_count
from studio.composition import build_studio
from studio.requests import Txt2ImgRequest
from studio.settings import Settings

PROMPT = "a red house by the sea"
SEED = 1


def run(quick: bool) -> dict[str, object]:
    rounds, size, steps = (2, 64, 2) if quick else (9, 128, 20)
    model, _ = bench_models(quick)
    studio = build_studio(Settings(model=str(model), device="cpu", outputs=None, preview_every=0))
    bare = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    bare.set_progress_bar_config(disable=True)
    # The studio's default sampler, DPM++ 2M Karras, as diffusers spells it.
    bare.scheduler = DPMSolverMultistepScheduler.from_config(bare.scheduler.config, use_karras_sigmas=True)
    request = Txt2ImgRequest(PROMPT, width=size, height=size, num_inference_steps=steps, seed=SEED)
    images: dict[str, object] = {}

    def studio_run() -> None:
        images["studio"] = studio.service.txt2img(request).images[0].image

    def bare_run() -> None:
        generator = [torch.Generator("cpu").manual_seed(SEED)]
        images["bare"] = bare(
            PROMPT,
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=request.guidance_scale,  # diffusers' default is 7.5, the studio's 7
            generator=generator,
        ).images[0]

    times = interleaved({"bare_diffusers": bare_run, "studio": studio_run}, rounds)
    medians = {name: summary(values)["median_s"] for name, values in times.items()}
    difference = np.abs(np.asarray(images["studio"], np.int16) - np.asarray(images["bare"], np.int16)).max()
    return {
        "benchmark": "studio_overhead",
        **machine(),
        "quick": quick,
        "model_parameters": parameter_count(bare),
        "size": size,
        "steps": steps,
        "sampler": "DPM++ 2M Karras",
        "rounds": rounds,
        "seconds": {name: summary(values) for name, values in times.items()},
        "studio_over_bare_ratio": round(medians["studio"] / medians["bare_diffusers"], 4),
        "target_ratio_at_most": 1.03,
        "max_pixel_difference": int(difference),
    }


if __name__ == "__main__":
    emit(run(parse_args(__doc__.splitlines()[0]).quick))
