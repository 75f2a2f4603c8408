"""The Gradio web layer: one file per tab, shared widget builders, and the error/progress adapters.

``create_demo`` and ``launch`` are imported on first use, so that ``studio.ui.zerogpu`` can be imported before
torch (Hugging Face's ``spaces`` package must come first on ZeroGPU) without pulling in the tabs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_demo", "launch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from studio.ui import studio_app

        return getattr(studio_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
