"""The Gradio web layer: one file per tab, shared widget builders, and the error/progress adapters."""

from studio.ui.studio_app import create_demo, launch

__all__ = ["create_demo", "launch"]
