"""``GET /sdapi/v1/memory`` in A1111's shape: system RAM, and CUDA memory where there is a CUDA GPU."""

from __future__ import annotations

from typing import Any

import psutil
import torch


def memory_report() -> dict[str, Any]:
    """RAM of the machine (bytes) and, on CUDA, the device's and PyTorch allocator's figures; elsewhere
    ``cuda`` holds an ``error`` saying why there are none, as A1111 answers."""
    system = psutil.virtual_memory()
    ram = {"free": system.available, "used": system.total - system.available, "total": system.total}
    return {"ram": ram, "cuda": _cuda()}


def _cuda() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"error": "no CUDA GPU: PyTorch sees none on this machine"}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(name: str) -> dict[str, int]:
        return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

    return {
        "system": {"free": free, "used": total - free, "total": total},
        "active": pair("active_bytes"),
        "allocated": pair("allocated_bytes"),
        "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }
