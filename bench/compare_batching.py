"""Comparison batching: N prompts as one Compare call (one batched pipeline call) versus the same N prompts as N
text-to-image calls, same settings and seed, interleaved. Also checks that each cell is the image text to image
makes. Prints JSON.

    python bench/compare_batching.py            # the mid-size model, 4 prompts, 128x128, 20 steps
    python bench/compare_batching.py --quick    # proves it runs (tiny model)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.common import emit, interleaved, machine, parse_args, summary
from bench.models import bench_models
from studio.composition import build_studio
from studio.requests import CompareRequest, Txt2ImgRequest
from studio.settings import Settings

PROMPTS = ("a red house by the sea", "a blue house by the sea", "a red tree by the sea", "a cat on the moon")
SEED = 7


def run(quick: bool) -> dict[str, object]:
    rounds, size, steps, count = (1, 64, 2, 2) if quick else (5, 128, 20, 4)
    prompts = PROMPTS[:count]
    model, _ = bench_models(quick)
    studio = build_studio(Settings(model=str(model), device="cpu", outputs=None, preview_every=0))
    shared = {"width": size, "height": size, "num_inference_steps": steps, "seed": SEED}
    found: dict[str, list[object]] = {}

    def batched() -> None:
        result = studio.service.compare(CompareRequest(prompts, **shared))
        found["batched"] = [cell.image.image for cell in result.cells]

    def sequential() -> None:
        found["sequential"] = [studio.service.txt2img(Txt2ImgRequest(p, **shared)).images[0].image for p in prompts]

    times = interleaved({"sequential": sequential, "batched": batched}, rounds)
    medians = {name: summary(values)["median_s"] for name, values in times.items()}
    difference = max(
        int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
        for a, b in zip(found["batched"], found["sequential"], strict=True)
    )
    return {
        "benchmark": "compare_batching",
        **machine(),
        "quick": quick,
        "prompts": len(prompts),
        "size": size,
        "steps": steps,
        "rounds": rounds,
        "seconds": {name: summary(values) for name, values in times.items()},
        "sequential_over_batched_speedup": round(medians["sequential"] / medians["batched"], 3),
        "max_pixel_difference_cell_vs_txt2img": difference,
    }


if __name__ == "__main__":
    emit(run(parse_args(__doc__.splitlines()[0]).quick))
