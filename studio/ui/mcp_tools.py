"""The tools assistants see through Gradio's MCP server (``--mcp``, at ``/gradio_api/mcp/``).

Gradio makes every API endpoint a tool, but the generation tabs' endpoints do not work as tools in Gradio 6:
their results are a gallery (which Gradio's MCP turns into a text dump instead of images) plus per-session
``gr.State`` outputs (which its MCP server mis-counts, failing every call), and a queued tool is called back
through ``gradio_client``, which cannot log in when the studio has passwords. So the studio gives assistants
tools of their own, written for them: one picture out as an image, its parameters as text, run directly on the
service (the GPU lock still serialises them with every other job), and the tabs' endpoints are left out of the
tool list. They stay in Gradio's API for ``gradio_client``.

No ``from __future__ import annotations`` here: Gradio reads the tools' return annotations as real types.
"""

import importlib.util
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image

from studio.api.images import png_bytes
from studio.requests import RANDOM_SEED, Txt2ImgRequest
from studio.schedulers import DEFAULT_SAMPLER
from studio.settings import SettingsError
from studio.ui.errors import user_errors
from studio.ui.zerogpu import gpu

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio

MCP_INSTALL = "pip install -r requirements-mcp.txt"
NOT_A_TOOL = "not an MCP tool"
"""Gradio lists as tools only functions whose ``_mcp_type`` is unset or "tool" (its ``gr.mcp`` decorators set
the attribute); the tabs' handlers get this value instead."""


def check_mcp_extra() -> None:
    """``--mcp`` needs Gradio's MCP extra; say how to install it instead of failing at launch."""
    if importlib.util.find_spec("mcp") is None:
        raise SettingsError(f"--mcp needs Gradio's MCP extra, which is not installed: {MCP_INSTALL}")


def _png_in_cache(image: Image.Image) -> gr.FileData:
    """The picture as a PNG (with its metadata) in Gradio's cache, the one folder the server serves files from,
    so the tool's "Image URL" can be opened."""
    folder = Path(tempfile.mkdtemp(prefix="mcp-", dir=gr.utils.get_upload_folder()))
    path = folder / "image.png"
    path.write_bytes(png_bytes(image))
    return gr.FileData(path=str(path), mime_type="image/png", orig_name=path.name)


def add_mcp_tools(studio: "Studio") -> list[object]:
    """Register the assistants' tools as API endpoints of the Blocks being built (call inside ``gr.Blocks``,
    before the tabs, so the tools keep their plain names). Returns their functions."""

    @gpu()
    @user_errors(outputs=2)
    def txt2img(
        prompt: str,
        negative_prompt: str = "",
        sampler: str = DEFAULT_SAMPLER,
        steps: int = 25,
        guidance_scale: float = 7.0,
        width: int = 512,
        height: int = 512,
        seed: int = RANDOM_SEED,
        hires_scale: float = 1.0,
        variation_seed: int = RANDOM_SEED,
        variation_strength: float = 0.0,
        tiling: bool = False,
    ) -> tuple[gr.FileData, str]:
        """Generate an image from a text prompt with Stable Diffusion.

        Args:
            prompt: what to draw, e.g. "a watercolor painting of a lighthouse at dawn".
                A1111's syntax works: "(word:1.3)", "[word]", "[a:b:0.5]", "BREAK", more than 75 tokens.
            negative_prompt: what to avoid, e.g. "blurry, text" ("" for nothing).
            sampler: an A1111 sampler name: "DPM++ 2M Karras" (default), "Euler a", "Euler", "DDIM", "UniPC"...
            steps: denoising steps, 20-30 is usual.
            guidance_scale: how closely to follow the prompt (CFG scale), 5-9 is usual.
            width: image width in pixels, a multiple of 8 (512 for SD 1.x models, 1024 for SDXL).
            height: image height in pixels, a multiple of 8.
            seed: -1 for a random seed; the same seed and settings give the same image again.
            hires_scale: above 1 (up to 4), the hires fix: the image is drawn at width x height, upscaled by this
                factor, then its details redrawn (A1111's defaults: Latent upscaler, denoising strength 0.7).
            variation_seed: with variation_strength above 0, a variation of the seed's image towards this seed's
                (-1 for a random one); keep the seed and change this to get variations of one image.
            variation_strength: 0 (off) to 1; 0.1-0.3 keeps the composition and changes details.
            tiling: true for a picture that repeats without a seam (a texture or pattern).
        Returns:
            The PNG image, and its generation parameters (A1111 text, including the seed used).
        """
        request = Txt2ImgRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            seed=seed,
            enable_hr=hires_scale != 1,
            hr_scale=hires_scale,
            subseed=variation_seed,
            subseed_strength=variation_strength,
            tiling=tiling,
        )
        made = studio.service.txt2img(request).images[0]
        return _png_in_cache(made.image), made.parameters

    gr.api(txt2img, api_name="mcp_txt2img", queue=False)
    return [txt2img]


def keep_only_mcp_tools(demo: gr.Blocks, tools: list[object]) -> None:
    """Leave every endpoint but ``tools`` out of the MCP tool list (they stay in Gradio's API)."""
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and block_fn.fn not in tools and block_fn.api_visibility == "public":
            try:
                block_fn.fn._mcp_type = NOT_A_TOOL  # type: ignore[attr-defined]
            except AttributeError:  # a bound method or builtin: cannot carry the mark
                continue
