"""The micro model's domain: seeded 64x64 scenes of one or two coloured shapes on a coloured background.

Every scene comes with its caption ("a yellow star and a green square on a black background") and with the
ground truth the detector and the evaluation compare against. Scenes are drawn with PIL; the same seed always
gives the same scene, so training runs and evaluations reproduce.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
"""Side of every scene in pixels: the micro model's native resolution."""

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (35, 70, 225),
    "yellow": (245, 215, 40),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
"""The named colours, far enough apart in RGB that the nearest one is always the intended one."""
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

VOCABULARY: tuple[str, ...] = (*COLOURS, *SHAPES, "a", "an", "and", "on", "background")
"""Every word a caption uses: the tokenizer gives each of them one token."""


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its kind, colour name, centre and radius (half its bounding box side) in pixels."""

    kind: str
    colour: str
    centre: tuple[float, float]
    radius: float


@dataclass(frozen=True)
class Scene:
    """A drawn scene, its caption and what is in it."""

    image: Image.Image
    caption: str
    background: str
    shapes: tuple[Shape, ...]


def caption_for(background: str, shapes: tuple[Shape, ...]) -> str:
    """The caption of a scene, shapes named left to right: "a red circle and a blue star on a white background"."""
    names = " and ".join(f"a {shape.colour} {shape.kind}" for shape in sorted(shapes, key=lambda s: s.centre[0]))
    return f"{names} on a {background} background"


def _star_points(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    inner = radius * 0.45
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    """Draw ``shape`` filled in its colour (upright: squares axis-aligned, triangles and stars point up)."""
    cx, cy = shape.centre
    r = shape.radius
    fill = PALETTE[shape.colour]
    if shape.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape.kind == "square":
        side = r * 0.9  # a square looks as big as a circle of the same radius when a little smaller
        draw.rectangle((cx - side, cy - side, cx + side, cy + side), fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape.kind == "star":
        draw.polygon(_star_points(cx, cy + r * 0.1, r * 1.1), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape.kind!r}; the shapes are {', '.join(SHAPES)}")


def render(background: str, shapes: tuple[Shape, ...]) -> Image.Image:
    """The 64x64 RGB picture of ``shapes`` on ``background``."""
    image = Image.new("RGB", (SIZE, SIZE), PALETTE[background])
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        draw_shape(draw, shape)
    return image


_REACH = {"circle": 1.0, "square": 0.9, "triangle": 1.0, "star": 1.1}
"""How far each shape reaches from its centre, in radii (a star is drawn a little larger)."""


def make_scene(rng: random.Random, shape_count: int | None = None) -> Scene:
    """A random scene from ``rng``: one or two shapes of distinct colours, none the background's colour.

    One shape sits anywhere near the middle; two sit side by side (one in each half) so they never overlap.
    """
    count = shape_count or rng.choice((1, 2))
    background, *colours = rng.sample(COLOURS, count + 1)
    kinds = [rng.choice(SHAPES) for _ in colours]
    if count == 1:
        radii = [rng.uniform(12, 18)]
        lows, highs = [radii[0] + 4], [SIZE - radii[0] - 4]
    else:
        radii = [rng.uniform(8.5, 11) for _ in colours]
        reach = [r * _REACH[kind] for r, kind in zip(radii, kinds, strict=True)]
        # one in each half, with a gap between them
        lows, highs = [reach[0] + 2, SIZE / 2 + reach[1] + 1], [SIZE / 2 - reach[0] - 1, SIZE - reach[1] - 2]
    shapes = tuple(
        Shape(kind, colour, (rng.uniform(low, high), rng.uniform(radius * 1.2 + 2, SIZE - radius * 1.2 - 2)), radius)
        for kind, colour, radius, low, high in zip(kinds, colours, radii, lows, highs, strict=True)
    )
    return Scene(render(background, shapes), caption_for(background, shapes), background, shapes)


def scene_for_seed(seed: int, shape_count: int | None = None) -> Scene:
    """The scene of ``seed``: the same seed always draws the same scene."""
    return make_scene(random.Random(seed), shape_count)


def parse_caption(caption: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(background, ((colour, shape), ...)) named by a caption written as ``caption_for`` writes them.

    Raises ``ValueError`` naming the part it could not read.
    """
    words = caption.lower().replace(",", " ").split()
    if len(words) < 3 or words[-1] != "background" or words[-2] not in PALETTE:
        raise ValueError(f"{caption!r} does not end with '<colour> background'")
    objects = []
    for i, word in enumerate(words[:-2]):
        if word in SHAPES:
            colour = words[i - 1] if i > 0 else ""
            if colour not in PALETTE:
                raise ValueError(f"{caption!r}: the {word} has no colour before it")
            objects.append((colour, word))
    return words[-2], tuple(objects)


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB picture as a uint8 array of shape (height, width, 3)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
