"""The Blocks app: the header, the tabs, the queue, and how it is launched."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.api import build_api
from studio.startup import StartingStudio
from studio.ui.cache import use_private_cache
from studio.ui.compare import build_compare_tab
from studio.ui.controlnet import build_controlnet_tab
from studio.ui.header import TABS_ID, build_header, loaded_studio, wire_header
from studio.ui.img2img import build_img2img_tab
from studio.ui.inpaint import build_inpaint_tab
from studio.ui.inputs import CheckedBlocks
from studio.ui.lab import build_lab_tab
from studio.ui.mcp_tools import add_mcp_tools, check_mcp_extra, keep_only_mcp_tools
from studio.ui.pnginfo import build_pnginfo_tab, wire_pnginfo_send_to
from studio.ui.queue_limit import count_in
from studio.ui.server import launch as serve
from studio.ui.server import server_app
from studio.ui.startup import hold_rest_until_loaded
from studio.ui.tabs import wire_send_to
from studio.ui.txt2img import build_txt2img_tab
from studio.ui.uploads import guard_decoding
from studio.ui.zerogpu import ZERO_GPU

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio

log = logging.getLogger(__name__)

CSS = """
#studio-header h1 { margin-bottom: 0; }
#studio-header p { margin-top: 0.25rem; opacity: 0.8; }
.prompt-diff mark { background: #fde68a; border-radius: 3px; padding: 0 2px; }
.token-count { font-size: 0.8rem; opacity: 0.7; min-height: 0; }
"""
THEME = gr.themes.Soft(primary_hue="indigo")


def create_demo(studio: Studio | StartingStudio) -> gr.Blocks:
    """The whole studio UI over ``studio``, with its queue configured. Launch it with ``launch``.

    A ``StartingStudio`` (``studio/startup.py``) builds the page before torch loads; its requests wait for the load.
    """
    use_private_cache()  # before any component is built: each reads the cache folder when it is created
    guard_decoding(studio.settings.max_upload_megapixels)
    if studio.settings.mcp:
        check_mcp_extra()
    with CheckedBlocks(title="Diffusion Studio") as demo:
        mcp_tools = add_mcp_tools(studio) if studio.settings.mcp else []
        header = build_header(studio)
        with gr.Tabs(elem_id=TABS_ID) as tabs:
            generation_tabs = [
                build_txt2img_tab(studio),
                build_img2img_tab(studio),
                build_inpaint_tab(studio),
                build_controlnet_tab(studio),
            ]
            compare = build_compare_tab(studio)
            lab_pictures = build_lab_tab(studio)
            pnginfo = build_pnginfo_tab(studio)
        wire_send_to(tabs, generation_tabs, [compare.cells, *lab_pictures], studio.settings.max_pixels)
        wire_pnginfo_send_to(tabs, pnginfo, generation_tabs, studio)
        prompts = {tab.tab_id: tab.prompt for tab in generation_tabs} | {"compare": compare.prompts}
        negatives = {tab.tab_id: tab.negative_prompt for tab in generation_tabs} | {"compare": compare.negative_prompt}
        wire_header(demo, header, studio, prompts, negatives, [tab.event for tab in generation_tabs])
    if studio.settings.mcp:
        keep_only_mcp_tools(demo, mcp_tools)
    # Explicit, so a flood of requests is told "queue is full" instead of waiting forever.
    demo.queue(max_size=studio.settings.max_queue, default_concurrency_limit=1)
    count_in(demo, studio.waiting)  # one --max-queue over this queue and the REST API's
    return demo


def launch(demo: gr.Blocks, studio: Studio | StartingStudio, **kwargs: Any) -> None:
    """Serve ``demo`` as the settings say (blocking unless ``prevent_thread_lock=True``), with the
    A1111-compatible REST API beside it unless ``--no-api`` or on ZeroGPU, where its jobs would run outside
    ``spaces.GPU``, in a process that has no GPU.

    A ``StartingStudio`` whose libraries still load is served at once; the REST routes are added once it has
    loaded, and requests for them wait till then (``studio/ui/startup.py``).
    """
    settings = studio.settings
    serve_api = settings.api and not ZERO_GPU
    if settings.api and ZERO_GPU:
        log.warning("the A1111-compatible REST API is off on ZeroGPU; Gradio's API (/gradio_api) serves every tab")
    ready = loaded_studio(studio)
    if serve_api and isinstance(studio, StartingStudio) and ready is None:
        server = server_app(settings)

        def add_routes() -> None:
            server.include_router(build_api(studio.studio()))

        hold_rest_until_loaded(server, studio, add_routes)
        serve(demo, settings, THEME, CSS, (), **{"_app": server, **kwargs})
        return
    routers = [build_api(ready)] if serve_api and ready is not None else []
    serve(demo, settings, THEME, CSS, routers, **kwargs)
