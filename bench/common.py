"""What every benchmark script shares: the machine it ran on, interleaved timing, memory readings, JSON out.

Each script prints one JSON document on stdout and writes nothing else (the random-weight models it measures
are built once into the temporary folder and reused). ``--quick`` runs every code path on the tiny test model at
a tiny size with one or two rounds, to prove the script works; its numbers are not worth quoting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import torch  # noqa: E402


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny model, tiny size, fewest rounds: proves the script runs"
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def machine() -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    import diffusers

    info: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def interleaved(runs: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each run, round after round (A, B, A, B, ...), so drift in the machine hits all alike; the
    warm-up rounds are not counted."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def summary(seconds: list[float]) -> dict[str, float | int]:
    return {
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "runs": len(seconds),
    }


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """The most resident memory this process has had (Linux reports kilobytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def storages(modules: Iterable[torch.nn.Module]) -> dict[int, int]:
    """Each distinct storage behind the modules' parameters and buffers: its address and its bytes. Two modules
    that share weights share these entries."""
    found: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
    return found


def pipeline_modules(pipeline: Any) -> list[torch.nn.Module]:
    return [value for value in pipeline.components.values() if isinstance(value, torch.nn.Module)]


def mib(value: float) -> float:
    return round(value / 2**20, 2)


def emit(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2))
