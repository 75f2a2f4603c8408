"""Diffusion Studio's entry point and Hugging Face Spaces app file: settings -> studio -> UI.

``python app.py --help`` lists every flag. When this file is imported rather than run (``gradio app.py``), the
settings come from ``STUDIO_*`` environment variables alone.
"""

from __future__ import annotations

import logging
import os
import sys

from studio.settings import Settings, SettingsError

# Flags are read before torch, diffusers and gradio are imported, so `--help` and a bad flag answer at once.
try:
    settings = Settings.from_cli(sys.argv[1:] if __name__ == "__main__" else [])
    settings.check_exposure(on_spaces=bool(os.environ.get("SPACE_ID")))
except SettingsError as error:
    sys.exit(f"diffusion studio: {error}")

# Hugging Face's `spaces` package (when installed) must come before torch: on ZeroGPU it patches torch's CUDA entry
# points. This module imports it and nothing heavy; everything below brings torch in.
from studio.ui import zerogpu  # noqa: F401, I001

from studio.composition import build_studio, load_at_startup
from studio.ui import create_demo, launch

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    studio = build_studio(settings)
    if os.environ.get("SPACE_ID"):  # on Hugging Face Spaces: weights load now (ZeroGPU requires it), not on first use
        load_at_startup(studio)
    demo = create_demo(studio)
except SettingsError as error:
    sys.exit(f"diffusion studio: {error}")

if __name__ == "__main__":
    launch(demo, studio)
