"""Draw the example pictures in assets/examples/ (from the repository root: ``PYTHONPATH=. python
assets/make_examples.py``).

Flat shapes drawn with PIL, so each file is a few kilobytes and everything here is made by this project: a
lighthouse scene for image to image, a room with an apple and a mask over it for inpainting, and a vase with clean
outlines for the Canny ControlNet. The micro model's examples (``micro-*.png``) are scenes of its own domain, drawn
by the code that draws its training scenes, at its 64x64.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from studio.micro.scenes import SIZE as MICRO_SIZE
from studio.micro.scenes import Shape, render

FOLDER = Path(__file__).resolve().parent / "examples"
SIZE = 512


def lighthouse() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    bands = [(70, 110, 190), (110, 140, 200), (170, 150, 190), (230, 160, 140), (250, 190, 120)]
    band = 300 // len(bands)
    for index, color in enumerate(bands):  # the sky darkens upwards
        draw.rectangle((0, index * band, SIZE, (index + 1) * band), fill=color)
    draw.ellipse((330, 220, 410, 300), fill=(255, 220, 120))  # the setting sun
    draw.rectangle((0, 300, SIZE, SIZE), fill=(40, 80, 130))  # the sea
    draw.polygon([(0, 380), (90, 330), (220, 340), (300, 400), (300, SIZE), (0, SIZE)], fill=(90, 85, 80))
    tower = [(120, 340), (180, 340), (170, 150), (130, 150)]
    draw.polygon(tower, fill=(240, 240, 235))
    for top in (300, 230):  # red stripes
        draw.polygon([(124, top + 30), (176, top + 30), (173, top), (127, top)], fill=(190, 40, 40))
    draw.rectangle((126, 120, 174, 150), fill=(255, 230, 140))  # the lantern
    draw.polygon([(120, 120), (180, 120), (150, 90)], fill=(60, 60, 70))  # the roof
    return image


def room() -> tuple[Image.Image, Image.Image]:
    image = Image.new("RGB", (SIZE, SIZE), (225, 215, 195))  # the wall
    draw = ImageDraw.Draw(image)
    draw.rectangle((300, 60, 460, 240), fill=(170, 210, 240), outline=(110, 80, 60), width=10)  # a window
    draw.line((380, 60, 380, 240), fill=(110, 80, 60), width=8)
    draw.line((300, 150, 460, 150), fill=(110, 80, 60), width=8)
    draw.rectangle((0, 400, SIZE, SIZE), fill=(150, 120, 90))  # the floor
    draw.rectangle((60, 300, 420, 330), fill=(120, 75, 40))  # the table top and its legs
    draw.rectangle((80, 330, 100, 440), fill=(100, 60, 30))
    draw.rectangle((380, 330, 400, 440), fill=(100, 60, 30))
    draw.ellipse((190, 240, 250, 300), fill=(200, 30, 30))  # an apple
    draw.rectangle((218, 226, 222, 244), fill=(90, 60, 30))
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).ellipse((160, 200, 290, 310), fill=255)  # white = repaint: the apple and around it
    return image, mask


def vase() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 420, SIZE, SIZE), fill=(180, 140, 100))  # the table
    outline = (30, 30, 30)
    draw.ellipse((176, 220, 336, 410), fill=(70, 110, 170), outline=outline, width=4)  # the body
    draw.rectangle((226, 150, 286, 240), fill=(70, 110, 170), outline=outline, width=4)  # the neck
    draw.ellipse((211, 135, 301, 165), fill=(50, 80, 130), outline=outline, width=4)  # the lip
    for x, y in ((200, 70), (256, 50), (312, 70)):  # three flowers
        draw.line((256, 150, x, y + 30), fill=(40, 120, 40), width=5)
        draw.ellipse((x - 28, y - 28 + 30, x + 28, y + 28 + 30), fill=(240, 200, 40), outline=outline, width=3)
    return image


def micro_pictures() -> dict[str, Image.Image]:
    """The micro model's example pictures: a circle to restyle, two shapes and a mask over the left one to repaint,
    and a circle for the Canny ControlNet to follow (low on the left, at a size it was trained on)."""
    pair = render("white", (Shape("square", "red", (17.0, 32.0), 10.0), Shape("circle", "blue", (46.0, 32.0), 10.0)))
    mask = Image.new("L", (MICRO_SIZE, MICRO_SIZE), 0)
    ImageDraw.Draw(mask).ellipse((3, 16, 31, 48), fill=255)
    return {
        "micro-circle": render("blue", (Shape("circle", "yellow", (32.0, 32.0), 16.0),)),
        "micro-pair": pair,
        "micro-pair-mask": mask,
        "micro-outline": render("white", (Shape("circle", "black", (22.0, 40.0), 14.0),)),
    }


def main(folder: Path = FOLDER) -> None:
    folder.mkdir(exist_ok=True)
    lighthouse().save(folder / "lighthouse.png", optimize=True)
    picture, mask = room()
    picture.save(folder / "room.png", optimize=True)
    mask.save(folder / "room-mask.png", optimize=True)
    vase().save(folder / "vase.png", optimize=True)
    for name, picture in micro_pictures().items():
        picture.save(folder / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
