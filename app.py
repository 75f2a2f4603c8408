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
# points. This module imports it and nothing heavy.
from studio.ui import zerogpu  # noqa: F401, I001

from studio.startup import choose_in_background, prepare_studio

# The micro-model fallback's Hub check runs while Gradio imports.
choice = choose_in_background(settings)

# The page is built without torch, diffusers or transformers: they load behind it (studio/startup.py).
from studio.ui import create_demo, launch  # noqa: E402
from studio.ui.startup import report_loading  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
ON_SPACES = bool(os.environ.get("SPACE_ID"))

try:
    studio = prepare_studio(settings, choice, on_wait=report_loading)
    if ON_SPACES:  # the weights load now, before the page is served: ZeroGPU requires it, and no visitor waits
        from studio.composition import load_at_startup

        studio.loader.run()
        if isinstance(studio.loader.error, SettingsError):
            raise studio.loader.error
        if studio.loader.error is None:
            load_at_startup(studio.studio())
    demo = create_demo(studio)
except SettingsError as error:
    sys.exit(f"diffusion studio: {error}")

if __name__ == "__main__":
    launch(demo, studio, prevent_thread_lock=True)
    studio.loader.run()  # here, while the server's own thread serves the page; requests wait for it
    if isinstance(studio.loader.error, SettingsError):  # a choice this machine cannot honour (--device cuda)
        demo.close()
        sys.exit(f"diffusion studio: {studio.loader.error}")
    demo.block_thread()
else:  # imported (`gradio app.py`): Gradio launches the page; the studio loads in a thread meanwhile
    studio.loader.start()
