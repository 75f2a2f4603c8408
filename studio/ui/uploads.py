"""Image inputs that check an upload's size from its header before anything decodes it.

A PNG of 95 KB can claim 100 megapixels and take 300 MB to decode; Gradio's own image inputs decode first and
ask later. These inputs read the header (width and height, no pixels), refuse what is over
``--max-upload-megapixels`` with a message saying so, and only then let Gradio decode. Inline base64 images are
checked the same way. PIL's own bomb limit is set to the same number, as a backstop for any other decode.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

MEGAPIXEL = 1_000_000


def guard_decoding(max_megapixels: int) -> None:
    """Make PIL refuse, at open time, any image over the limit (its warning zone becomes an error too)."""
    Image.MAX_IMAGE_PIXELS = max_megapixels * MEGAPIXEL
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _header_size(source: Any) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # read the header whatever it claims
        try:
            with Image.open(source) as image:
                return image.size
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def check_image_header(payload: Any, what: str, max_megapixels: int) -> None:
    """Raise a ``gr.Error`` for an upload (a FileData or a data: URL) that is not an image or is too large."""
    url = getattr(payload, "url", None)
    path = getattr(payload, "path", None)
    try:
        if isinstance(url, str) and url.startswith("data:"):
            source: Any = io.BytesIO(base64.b64decode(url.split(",", 1)[-1], validate=False))
        elif path:
            source = path
        else:
            return
        width, height = _header_size(source)
    except (UnidentifiedImageError, binascii.Error, ValueError):
        raise gr.Error(
            f"The {what} is not an image this studio can read; upload a PNG, JPEG or WebP.", print_exception=False
        ) from None
    except OSError:
        raise gr.Error(f"The {what} could not be read; upload it again.", print_exception=False) from None
    if width * height > max_megapixels * MEGAPIXEL:
        raise gr.Error(
            f"The {what} is {width}x{height}, {width * height / MEGAPIXEL:.0f} megapixels; this studio accepts up "
            f"to {max_megapixels} (--max-upload-megapixels). Make it smaller and upload it again.",
            print_exception=False,
        )


def unreadable(what: str) -> gr.Error:
    """The message for an image whose header reads but whose pixels do not (a file cut short, or damaged)."""
    return gr.Error(
        f"The {what} could not be read to its end: the file is cut short or damaged. Upload the whole file again "
        "(a PNG, JPEG or WebP).",
        print_exception=False,
    )


def decoded(convert: Callable[[Any], Any], payload: Any, what: str) -> Any:
    """``convert(payload)`` (Gradio's own decoding), with PIL's errors for a broken file as a message: the header
    check passes a file cut short, and decoding its pixels fails."""
    try:
        return convert(payload)
    except (OSError, SyntaxError, ValueError):
        raise unreadable(what) from None


class CheckedImage(gr.Image):
    """``gr.Image`` that checks the upload's header first (shown in the browser as a plain image input)."""

    is_template = True

    def __init__(self, *args: Any, max_megapixels: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_megapixels = max_megapixels

    def get_config(self, cls: type | None = None) -> dict[str, Any]:
        # Gradio reads the props from the __init__ signature: use gr.Image's, which names them all.
        return super().get_config(cls or gr.Image)

    def preprocess(self, payload: Any) -> Any:
        what = str(self.label or "image").lower()
        if payload is not None:
            check_image_header(payload, what, self.max_megapixels)
        return decoded(super().preprocess, payload, what)


class CheckedImageMask(gr.ImageEditor):
    """A brush-and-eraser mask editor (as ``gr.ImageMask``) that checks every layer's header first."""

    is_template = True

    def __init__(self, *args: Any, max_megapixels: int, **kwargs: Any) -> None:
        kwargs.setdefault("layers", False)
        super().__init__(*args, **kwargs)
        self.max_megapixels = max_megapixels

    def get_config(self, cls: type | None = None) -> dict[str, Any]:
        return super().get_config(cls or gr.ImageEditor)

    def preprocess(self, payload: Any) -> Any:
        if payload is not None:
            for item in (getattr(payload, "background", None), *(getattr(payload, "layers", None) or [])):
                if item is not None and not isinstance(item, bytes | bytearray | memoryview):
                    check_image_header(item, "image", self.max_megapixels)
        return decoded(super().preprocess, payload, "image")
