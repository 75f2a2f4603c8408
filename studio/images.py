"""Pure image work for the image tabs: resize modes, masks, crops around a mask, and compositing.

PIL, numpy and OpenCV only (no torch), so all of it is tested on plain pictures. Masks are mode "L" images where
255 means "repaint" and 0 means "keep".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")


def multiple_of_8(value: float) -> int:
    """The nearest multiple of 8 (at least 8): the VAE works on 8x8 pixel cells."""
    return max(8, math.floor(value / 8 + 0.5) * 8)


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """``width x height`` snapped to multiples of 8 and scaled down (keeping the aspect) to at most ``max_pixels``."""
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    w, h = multiple_of_8(width * scale), multiple_of_8(height * scale)
    while w * h > max_pixels:
        if w >= h:
            w -= 8
        else:
            h -= 8
    return w, h


def to_rgb(image: Image.Image) -> Image.Image:
    """Any upload as plain RGB, upright: EXIF rotation applied, transparency flattened onto white."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def resize_image(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Resize as A1111 does: stretch, cover and centre-crop, or contain and fill the borders."""
    if mode == "Just resize":
        return image.resize((width, height), Image.LANCZOS)
    if mode == "Crop and resize":
        return ImageOps.fit(image, (width, height), Image.LANCZOS)
    if mode == "Resize and fill":
        # The borders get the picture itself, stretched and blurred, so no hard edge meets the model.
        background = image.resize((width, height), Image.LANCZOS).filter(ImageFilter.GaussianBlur(radius=16))
        contained = ImageOps.contain(image, (width, height), Image.LANCZOS)
        background.paste(contained, ((width - contained.width) // 2, (height - contained.height) // 2))
        return background
    raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")


def mask_from_layers(layers: Sequence[Image.Image | None], size: tuple[int, int]) -> Image.Image:
    """The mask painted in an image editor: wherever any layer is not transparent.

    Brush strokes live in the layers' alpha channel; their colour does not matter (black strokes on a black
    picture are still strokes), so the mask is read from alpha, never from colour.
    """
    mask = Image.new("L", size, 0)
    for layer in layers:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.NEAREST)
        mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(alpha)))
    return binarize(mask)


def mask_from_image(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An uploaded mask (white = repaint) as a binary mask of ``size``; transparent pixels count as black."""
    if mask.mode in ("RGBA", "LA", "P"):
        rgba = mask.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        mask = Image.alpha_composite(black, rgba)
    gray = mask.convert("L")
    if gray.size != size:
        gray = gray.resize(size, Image.LANCZOS)
    return binarize(gray)


def binarize(mask: Image.Image, threshold: int = 128) -> Image.Image:
    """Pixels at or above ``threshold`` become 255, the rest 0."""
    return mask.convert("L").point(lambda v: 255 if v >= threshold else 0)


def invert(mask: Image.Image) -> Image.Image:
    return ImageOps.invert(mask.convert("L"))


def blur(mask: Image.Image, radius: int, radius_y: int | None = None) -> Image.Image:
    """The mask with soft edges, so the repainted region blends into the kept one without a seam: a Gaussian of
    standard deviation ``radius`` across and ``radius_y`` (by default the same) down, each direction on its own
    as A1111 blurs it (OpenCV, a kernel 2.5 deviations wide either side), so its ``mask_blur_x``/``_y`` mean the
    same here."""
    radius_y = radius if radius_y is None else radius_y
    if radius <= 0 and radius_y <= 0:
        return mask
    pixels = np.asarray(mask.convert("L"))
    if radius > 0:
        pixels = cv2.GaussianBlur(pixels, (2 * int(2.5 * radius + 0.5) + 1, 1), radius)
    if radius_y > 0:
        pixels = cv2.GaussianBlur(pixels, (1, 2 * int(2.5 * radius_y + 0.5) + 1), radius_y)
    return Image.fromarray(pixels)


def is_empty(mask: Image.Image) -> bool:
    return mask.getbbox() is None


@dataclass(frozen=True)
class Box:
    """A pixel rectangle: left, top, right, bottom (right and bottom exclusive), as PIL's ``crop`` takes it."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def size(self) -> tuple[int, int]:
        return self.right - self.left, self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom


def padded_box(mask: Image.Image, padding: int) -> Box:
    """The mask's bounding box grown by ``padding`` pixels on each side, inside the image."""
    bbox = mask.getbbox()
    if bbox is None:
        raise ValueError("the mask is empty")
    width, height = mask.size
    return Box(
        max(bbox[0] - padding, 0),
        max(bbox[1] - padding, 0),
        min(bbox[2] + padding, width),
        min(bbox[3] + padding, height),
    )


def _widen(low: int, high: int, length: int, limit: int) -> tuple[int, int]:
    """The span [low, high) grown to ``length`` around its centre, shifted to stay inside [0, limit)."""
    length = min(length, limit)
    low = max(0, low - (length - (high - low)) // 2)
    high = min(limit, low + length)
    return high - length, high


def expand_to_aspect(box: Box, aspect: float, image_size: tuple[int, int]) -> Box:
    """``box`` widened or heightened to ``aspect`` (width / height), inside the image, so the crop scales to the
    processing size without distortion ("only masked" inpainting)."""
    width, height = box.size
    if width / height < aspect:
        left, right = _widen(box.left, box.right, round(height * aspect), image_size[0])
        return Box(left, box.top, right, box.bottom)
    top, bottom = _widen(box.top, box.bottom, round(width / aspect), image_size[1])
    return Box(box.left, top, box.right, bottom)


def scale_to_area(size: tuple[int, int], side: int, max_pixels: int) -> tuple[int, int]:
    """``size`` scaled (up or down, keeping its aspect) to about ``side x side`` pixels: the resolution a model
    works best at; snapped to multiples of 8 and within ``max_pixels``."""
    width, height = size
    scale = side / (width * height) ** 0.5
    return fit_within(max(8, round(width * scale)), max(8, round(height * scale)), max_pixels)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": the masked region painted over with the colours around it (OpenCV's Telea inpainting),
    so the model starts from the surroundings rather than from what was there."""
    pixels = np.asarray(image.convert("RGB"))
    hole = (np.asarray(mask.convert("L")) >= 128).astype(np.uint8)
    radius = max(3, min(image.size) // 32)
    return Image.fromarray(cv2.inpaint(pixels, hole, radius, cv2.INPAINT_TELEA))


def noise_masked(image: Image.Image, mask: Image.Image, seed: int) -> Image.Image:
    """A1111's "latent noise", in pixels: the masked region replaced by seeded random colours."""
    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 256, size=(image.height, image.width, 3), dtype=np.uint8))
    return Image.composite(noise, image.convert("RGB"), binarize(mask))


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """``generated`` where the (soft) mask is white, ``original`` exactly where it is black."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.LANCZOS)
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))


PREPROCESSORS = ("canny", "none")


def canny(image: Image.Image, low_threshold: int, high_threshold: int) -> Image.Image:
    """OpenCV's Canny edges of ``image``: white lines on black, as RGB (what a canny ControlNet was trained on).

    Thresholds are the hysteresis pair on the gradient magnitude; swapped ones are put in order, so any pair of
    slider positions gives the same edges as the ordered pair.
    """
    low, high = sorted((int(low_threshold), int(high_threshold)))
    gray = np.asarray(image.convert("L"))
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(edges).convert("RGB")


def as_edge_map(image: Image.Image) -> Image.Image:
    """A ready-made edge map (preprocessor "none"): used as it is, in RGB."""
    return image.convert("RGB")
