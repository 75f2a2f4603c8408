"""What live previews cost: the same generation with previews off, every 5 steps (approximate), and every 5 steps
through the VAE, beside plain diffusers at the same sampler, steps and CFG scale, interleaved so drift in the
machine hits all alike. Prints JSON.

    python bench/preview_overhead.py            # the mid-size model (47 M parameters), 128x128, 20 steps
    python bench/preview_overhead.py --quick    # proves it runs (tiny model)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from diffusers import StableDiffusionPipeline

from bench.common import emit, interleaved, machine, parse_args, summary
from bench.models import bench_models, parameter_count
from studio.composition import build_studio
from studio.requests import Txt2ImgRequest
from studio.schedulers import build_scheduler
from studio.settings import Settings

PROMPT = "a red house by the sea"
SEED = 1
PREVIEW_EVERY = 5


def run(quick: bool) -> dict[str, object]:
    rounds, size, steps = (2, 64, 2) if quick else (7, 128, 20)
    model, _ = bench_models(quick)
    studios = {
        mode: build_studio(
            Settings(model=str(model), device="cpu", outputs=None, preview_every=every, preview_mode=preview)
        )
        for mode, every, preview in (
            ("off", 0, "approx"),
            ("approx", PREVIEW_EVERY, "approx"),
            ("vae", PREVIEW_EVERY, "vae"),
        )
    }
    plain = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = build_scheduler("DPM++ 2M Karras", plain.scheduler.config, [SEED])
    request = Txt2ImgRequest(PROMPT, width=size, height=size, num_inference_steps=steps, seed=SEED)
    previews: list[object] = []

    def studio_run(mode: str) -> None:
        studios[mode].service.txt2img(request, preview=previews.append)

    def plain_run() -> None:
        plain(
            PROMPT,
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=request.guidance_scale,  # diffusers' default is 7.5, the studio's 7
            generator=torch.Generator().manual_seed(SEED),
        )

    times = interleaved(
        {
            "plain_diffusers": plain_run,
            "off": lambda: studio_run("off"),
            "approx": lambda: studio_run("approx"),
            "vae": lambda: studio_run("vae"),
        },
        rounds,
    )
    median = {name: summary(values)["median_s"] for name, values in times.items()}
    return {
        "benchmark": "preview_overhead",
        **machine(),
        "quick": quick,
        "model_parameters": parameter_count(plain),
        "size": size,
        "steps": steps,
        "guidance_scale": request.guidance_scale,
        "preview_every": PREVIEW_EVERY,
        "rounds": rounds,
        "seconds": {name: summary(values) for name, values in times.items()},
        "overhead_vs_previews_off": {
            "approx": round(median["approx"] / median["off"] - 1, 4),
            "vae": round(median["vae"] / median["off"] - 1, 4),
        },
        "studio_previews_off_vs_plain_diffusers": round(median["off"] / median["plain_diffusers"] - 1, 4),
    }


if __name__ == "__main__":
    emit(run(parse_args(__doc__.splitlines()[0]).quick))
