"""The pure image functions behind img2img and inpainting."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio import images


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_mask_is_read_from_layer_alpha_not_colour() -> None:
    layer = Image.new("RGBA", (40, 30), (0, 0, 0, 0))  # transparent black everywhere
    ImageDraw.Draw(layer).rectangle((5, 5, 14, 9), fill=(0, 0, 0, 255))  # an opaque black stroke
    mask = images.mask_from_layers([layer], (40, 30))
    values = array(mask)
    assert mask.mode == "L"
    assert (values[5:10, 5:15] == 255).all()
    assert values.sum() == 255 * 10 * 5, "only the stroke, although everything else is black too"


def test_layers_of_another_size_are_scaled_and_combined() -> None:
    small = Image.new("RGBA", (20, 15), (0, 0, 0, 0))
    ImageDraw.Draw(small).rectangle((0, 0, 9, 6), fill=(255, 255, 255, 255))
    other = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    ImageDraw.Draw(other).rectangle((30, 20, 39, 29), fill=(255, 0, 0, 200))
    mask = array(images.mask_from_layers([small, None, other], (40, 30)))
    assert mask[0:14, 0:20].min() == 255
    assert mask[20:30, 30:40].min() == 255
    assert mask[16:19, 22:28].max() == 0


def test_uploaded_mask_is_resized_and_thresholded() -> None:
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (8, 1)))  # 16x8, dark to light
    mask = images.mask_from_image(gradient, (32, 16))
    values = array(mask)
    assert mask.size == (32, 16)
    assert set(np.unique(values)) == {0, 255}, "binary"
    assert values[:, 0].max() == 0 and values[:, -1].min() == 255


def test_transparent_parts_of_an_uploaded_mask_count_as_keep() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    rgba.putpixel((2, 2), (255, 255, 255, 255))
    values = array(images.mask_from_image(rgba, (8, 8)))
    assert values[2, 2] == 255 and values.sum() == 255


def test_blur_softens_only_near_the_edge() -> None:
    mask = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 71, 71), fill=255)
    soft = array(images.blur(mask, 4))
    assert 0 < soft[24, 48] < 255, "the edge is soft"
    assert soft[48, 48] == 255 and soft[0, 0] == 0
    assert images.blur(mask, 0) is mask


def test_composite_keeps_every_pixel_outside_the_mask() -> None:
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    generated = Image.new("RGB", (48, 32), (0, 255, 0))  # another size: resized onto the original
    mask = Image.new("L", (50, 30), 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 20, 20), fill=255)
    soft = images.blur(mask, 2)
    out = images.composite(original, generated, soft)
    keep = array(soft) == 0
    assert out.size == original.size
    assert (array(out)[keep] == array(original)[keep]).all()
    assert abs(array(out)[15, 15] - [0, 255, 0]).max() <= 2


def test_padded_box_and_aspect_expansion_stay_inside_the_image() -> None:
    mask = Image.new("L", (100, 80), 0)
    ImageDraw.Draw(mask).rectangle((90, 10, 99, 19), fill=255)
    padded = images.padded_box(mask, 8)
    assert padded.as_tuple() == (82, 2, 100, 28)
    wide = images.expand_to_aspect(padded, 2.0, mask.size)
    assert wide.size[0] / wide.size[1] == pytest.approx(2.0, abs=0.05)
    assert wide.left >= 0 and wide.right <= 100 and wide.left <= 90 and wide.right >= 100
    tall = images.expand_to_aspect(padded, 0.5, mask.size)
    assert tall.size == (18, 36) and tall.top >= 0 and tall.bottom <= 80
    with pytest.raises(ValueError, match="empty"):
        images.padded_box(Image.new("L", (8, 8)), 4)


def test_scale_to_area_generates_small_crops_at_full_resolution() -> None:
    width, height = images.scale_to_area((64, 32), 512, 1024 * 1024)
    assert (width, height) == (728, 360), "a 64x32 crop is generated at about 512x512 pixels, aspect kept"
    width, height = images.scale_to_area((1000, 1000), 512, 200_000)
    assert width * height <= 200_000 and width % 8 == 0 and height % 8 == 0


def test_fit_within_snaps_to_multiples_of_8_and_the_pixel_limit() -> None:
    assert images.fit_within(500, 375, 10**6) == (504, 376)
    width, height = images.fit_within(4000, 3000, 1024 * 1024)
    assert width * height <= 1024 * 1024 and width % 8 == 0 and height % 8 == 0
    assert width / height == pytest.approx(4 / 3, abs=0.02)


@pytest.mark.parametrize("mode", images.RESIZE_MODES)
def test_resize_modes_give_the_requested_size(mode: str) -> None:
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    ImageDraw.Draw(wide).rectangle((90, 40, 109, 59), fill=(0, 0, 255))
    out = images.resize_image(wide, 64, 64, mode)
    assert out.size == (64, 64)
    assert out.getpixel((32, 32))[2] > 200, "the centre stays in the picture"


def test_crop_and_resize_crops_the_sides_and_fill_keeps_them() -> None:
    wide = Image.new("RGB", (200, 100), (0, 0, 0))
    ImageDraw.Draw(wide).rectangle((0, 0, 19, 99), fill=(255, 255, 255))  # a white band on the left edge
    cropped = images.resize_image(wide, 100, 100, "Crop and resize")
    filled = images.resize_image(wide, 100, 100, "Resize and fill")
    assert max(cropped.getpixel((2, 50))) < 30, "cropped away"
    assert min(filled.getpixel((2, 50))) > 200, "kept, with the borders filled around it"


def test_fill_repaints_only_the_mask_with_its_surroundings() -> None:
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    ImageDraw.Draw(image).rectangle((12, 12, 19, 19), fill=(0, 0, 255))
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 21, 21), fill=255)
    filled = array(images.fill_masked(image, mask))
    keep = array(mask) == 0
    assert (filled[keep] == array(image)[keep]).all()
    assert abs(filled[16, 16] - [200, 30, 30]).max() < 40, "the blue square is gone, filled with red"


def test_latent_noise_is_seeded_and_only_in_the_mask() -> None:
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    mask = Image.new("L", (16, 16), 0)
    ImageDraw.Draw(mask).rectangle((4, 4, 11, 11), fill=255)
    first, second = images.noise_masked(image, mask, 7), images.noise_masked(image, mask, 7)
    assert (array(first) == array(second)).all()
    assert (array(first)[0, 0] == [10, 20, 30]).all()
    assert array(first)[4:12, 4:12].std() > 30


def test_uploads_of_any_mode_become_upright_rgb() -> None:
    rgba = Image.new("RGBA", (8, 4), (255, 0, 0, 0))
    assert images.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255), "transparency flattened onto white"
    assert images.to_rgb(Image.new("CMYK", (4, 4))).mode == "RGB"
    assert images.to_rgb(Image.new("I;16", (4, 4))).mode == "RGB"
    assert images.to_rgb(Image.new("P", (4, 4))).mode == "RGB"
    rotated = Image.new("RGB", (40, 20))
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees" as a phone camera writes it
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif)
    assert images.to_rgb(Image.open(buffer)).size == (20, 40)
