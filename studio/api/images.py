"""Images in and out of JSON: base64 (with or without a ``data:`` prefix), checked before decoding, and PNGs
with their metadata.

An image's header is read before its pixels, so one claiming more than ``--max-upload-megapixels`` is refused
without decoding it (a 100-megapixel PNG can be a few hundred bytes).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from studio.errors import InvalidRequest

MEGAPIXEL = 1_000_000


def decode_image(data: object, what: str, max_megapixels: int) -> Image.Image:
    """The picture in ``data`` (base64, optionally a ``data:image/...;base64,`` URL), fully loaded.

    ``what`` names the field in messages ("init_images[0]", "mask").
    """
    if not isinstance(data, str) or not data.strip():
        raise InvalidRequest(f"{what} is missing: send the image as base64 (PNG, JPEG or WebP)")
    text = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(text.strip(), validate=False)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not valid base64; send the image file's bytes base64-encoded") from None
    try:
        with warnings.catch_warnings():
            # The header only: PIL's own bomb warning would hide the size this check reports.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > max_megapixels * MEGAPIXEL:
            raise InvalidRequest(_too_large(what, width, height, max_megapixels))
        image.load()
    except Image.DecompressionBombError:  # so large that PIL refuses even to read on
        raise InvalidRequest(
            f"{what} has more than {max_megapixels} megapixels (--max-upload-megapixels); send a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidRequest(f"{what} is not an image this studio can read; send a PNG, JPEG or WebP") from None
    return image


def _too_large(what: str, width: int, height: int, max_megapixels: int) -> str:
    return (
        f"{what} is {width}x{height}, {width * height / MEGAPIXEL:.0f} megapixels; this studio accepts up to "
        f"{max_megapixels} (--max-upload-megapixels). Send a smaller image."
    )


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as a PNG file, with every text item of ``image.info`` (the A1111 ``parameters`` and the
    studio's JSON record) written as a PNG text chunk."""
    info = PngInfo()
    for key, value in image.info.items():
        if isinstance(key, str) and isinstance(value, str):
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> str:
    """``image`` as a base64 PNG with its metadata (``png_bytes``)."""
    return base64.b64encode(png_bytes(image)).decode("ascii")


def text_chunks(image: Image.Image) -> dict[str, str]:
    """The text items an image carries (PNG text chunks, or ``info`` entries other formats read as text)."""
    source = getattr(image, "text", None) or image.info
    return {key: value for key, value in source.items() if isinstance(key, str) and isinstance(value, str)}
