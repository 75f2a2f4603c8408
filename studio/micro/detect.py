"""A simple detector of the micro domain: which background colour, which coloured shapes, and where.

It reads pictures the way the evaluation and the tests need: every pixel takes the nearest named colour, the
background is the colour most of the border has, and each other colour's connected regions are the shapes.
A shape is told by geometry alone: a star is far from convex, a square fills its bounding box, a circle fills
about pi/4 of it and a triangle about half. On clean scenes it is exact (the tests check that), so what it
measures on generated pictures is the model, not the detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from studio.micro.scenes import COLOURS, PALETTE, to_array

MIN_AREA_PX = 30
"""Regions smaller than this are specks (anti-aliased edges, noise), not shapes."""
_PALETTE_RGB = np.array([PALETTE[name] for name in COLOURS], dtype=np.float32)

STAR_MAX_SOLIDITY = 0.8
SQUARE_MIN_EXTENT = 0.87
CIRCLE_MIN_EXTENT = 0.64


@dataclass(frozen=True)
class Blob:
    """One detected shape: its colour, kind, area in pixels, centre (x, y) and bounding box (x, y, w, h)."""

    colour: str
    shape: str
    area: int
    centre: tuple[float, float]
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Detection:
    """What the detector sees in a picture."""

    background: str
    blobs: tuple[Blob, ...]

    @property
    def colours(self) -> set[str]:
        return {blob.colour for blob in self.blobs}


def colour_labels(image: Image.Image | np.ndarray) -> np.ndarray:
    """Per pixel, the index into ``COLOURS`` of the nearest named colour, shape (height, width)."""
    pixels = to_array(image) if isinstance(image, Image.Image) else image
    distances = ((pixels[:, :, None, :].astype(np.float32) - _PALETTE_RGB) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def background_colour(labels: np.ndarray) -> str:
    """The colour most of the one-pixel border has."""
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    return COLOURS[int(np.bincount(border, minlength=len(COLOURS)).argmax())]


def classify_shape(mask: np.ndarray) -> str:
    """circle, square, triangle or star for a filled region (a uint8 mask of 0/1)."""
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    extent = area / float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours))
    hull_mask = np.zeros_like(mask)
    cv2.fillPoly(hull_mask, [hull], 1)
    solidity = area / float(max(int(hull_mask.sum()), 1))
    if solidity < STAR_MAX_SOLIDITY:
        return "star"
    if extent >= SQUARE_MIN_EXTENT:
        return "square"
    if extent >= CIRCLE_MIN_EXTENT:
        return "circle"
    return "triangle"


def detect(image: Image.Image | np.ndarray, min_area: int = MIN_AREA_PX) -> Detection:
    """The background colour and the shapes in ``image`` (largest first)."""
    labels = colour_labels(image)
    background = background_colour(labels)
    blobs = []
    for index, name in enumerate(COLOURS):
        if name == background:
            continue
        mask = (labels == index).astype(np.uint8)
        count, components, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=4)
        for component in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[component])
            if area < min_area:
                continue
            region = (components == component).astype(np.uint8)
            blobs.append(
                Blob(
                    name,
                    classify_shape(region),
                    area,
                    (float(centroids[component][0]), float(centroids[component][1])),
                    (x, y, w, h),
                )
            )
    return Detection(background, tuple(sorted(blobs, key=lambda b: -b.area)))


def edge_map(image: Image.Image | np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges (bool, height x width) with the studio's default thresholds."""
    pixels = to_array(image) if isinstance(image, Image.Image) else image
    return cv2.Canny(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), low, high) > 0


def edge_f1(predicted: np.ndarray, target: np.ndarray, tolerance_px: int = 1) -> float:
    """F1 of two edge maps, an edge counting as matched within ``tolerance_px`` pixels (the usual slack of edge
    benchmarks: a line one pixel off is the same line)."""
    if not predicted.any() or not target.any():
        return 0.0
    kernel = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    near_target = cv2.dilate(target.astype(np.uint8), kernel) > 0
    near_predicted = cv2.dilate(predicted.astype(np.uint8), kernel) > 0
    precision = float((predicted & near_target).sum()) / float(predicted.sum())
    recall = float((target & near_predicted).sum()) / float(target.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
