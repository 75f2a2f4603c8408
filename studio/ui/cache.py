"""The studio's own Gradio cache folder: what its file route serves, and what it cleans.

Gradio keeps uploads and results in one cache folder, by default the system temporary folder's ``gradio``, which
every Gradio app on the machine shares: its file route would serve another program's files, and cleaning it
would delete them. Unless ``GRADIO_TEMP_DIR`` names a folder (the operator's choice, kept), the studio makes a
private one (``diffusion-studio-*`` in the temporary folder, readable only by its own user), points Gradio at it
before any component is built, cleans files older than a day every hour while it runs (``delete_cache``), and
removes the folder when the process ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV = "GRADIO_TEMP_DIR"
CLEAN_EVERY_S = 3600
KEEP_S = 86400
DELETE_CACHE = (CLEAN_EVERY_S, KEEP_S)
"""``gr.Blocks(delete_cache=...)``: every hour, the files this app made that are older than a day."""


def use_private_cache() -> Path:
    """The studio's cache folder, made (once per process) and given to Gradio, unless the operator named one.

    Call it before the Blocks are built: each component reads the folder when it is created."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    folder = Path(tempfile.mkdtemp(prefix="diffusion-studio-"))  # mode 0700: this user's only
    os.environ[ENV] = str(folder)
    atexit.register(_remove_if_made_here, folder, os.getpid())
    return folder


def _remove_if_made_here(folder: Path, maker: int) -> None:
    """Remove ``folder`` at exit, in the process that made it only: a worker forked from it (ZeroGPU's) shares
    the folder and must not take it away from the server when it ends."""
    if os.getpid() == maker:
        shutil.rmtree(folder, ignore_errors=True)


def serve_only_own_cache(demo: Any) -> Path:
    """Point ``demo`` (built already) at the studio's cache, and have Gradio clean it on its schedule."""
    folder = use_private_cache()
    for block in demo.blocks.values():
        if hasattr(block, "GRADIO_CACHE"):
            block.GRADIO_CACHE = str(folder)
    demo.GRADIO_CACHE = str(folder)
    if not demo.delete_cache:
        demo.delete_cache = DELETE_CACHE
    return folder
