"""Image metadata: A1111's ``parameters`` text, plus a lossless JSON chunk of the request.

The ``parameters`` text is what every tool in the ecosystem reads (A1111's PNG Info, Civitai, Forge, image
browsers), so it is written exactly as A1111 writes it::

    a cat in a hat
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd15

That text is lossy (numbers are rounded for reading, fields are free-form), so the full request also goes into a
``diffusion-studio`` chunk as JSON, from which a generation can be repeated exactly. JPEG and WebP have no text
chunks: there the text goes into the EXIF ``UserComment``, as A1111 writes it (an 8-byte ``UNICODE`` character-code
prefix, then UTF-16 big-endian), so A1111's PNG Info and other readers find it there. This module is pure Python and
PIL: no torch, so it can read metadata anywhere.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from PIL import ExifTags, Image, TiffTags
from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "diffusion-studio"
NEGATIVE_PREFIX = "Negative prompt:"

IMAGE_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
"""The formats images are saved and downloaded in (our name -> PIL's); PNG is lossless and the default."""
FILE_SUFFIXES: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
LOSSY_QUALITY = 95
"""JPEG and WebP quality: high enough that the picture is hard to tell from the PNG, at a fraction of the size."""

# EXIF UserComment starts with an 8-byte character code (EXIF 2.3, section 4.6.5). A1111 writes "UNICODE" with
# UTF-16 big-endian text, as piexif's helper does; some tools write "ASCII", or nothing ("undefined").
_UNICODE_CODE = b"UNICODE\x00"
_ASCII_CODE = b"ASCII\x00\x00\x00"
_UNDEFINED_CODE = b"\x00" * 8
_JIS_CODE = b"JIS\x00\x00\x00\x00\x00"

# Pillow's table of EXIF sub-IFD tag types lacks UserComment, so Pillow would write it as BYTE; the standard type is
# UNDEFINED, and piexif (which A1111 reads EXIF with) returns a BYTE tag as a tuple of numbers it cannot decode.
TiffTags.TAGS_V2_GROUPS[ExifTags.IFD.Exif].setdefault(
    ExifTags.Base.UserComment, TiffTags.TagInfo(ExifTags.Base.UserComment, "UserComment", TiffTags.UNDEFINED, 0)
)

# One "Key: value" pair of the last line; a value is either JSON-quoted or runs to the next comma.
_PAIR = re.compile(r'\s*([\w][\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class Parameters:
    """An A1111 ``parameters`` text taken apart: the prompts and the ``Key: value`` fields in their order."""

    prompt: str
    negative_prompt: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)


def format_value(value: object) -> str:
    """A value as A1111 writes it: ``7`` not ``7.0``, and quoted when it holds a comma, colon or quote."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    else:
        text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_parameters(params: Parameters) -> str:
    """The A1111 text: prompt, then ``Negative prompt:`` (only when there is one), then the fields line."""
    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {params.negative_prompt}")
    lines.append(", ".join(f"{key}: {format_value(value)}" for key, value in params.fields.items()))
    return "\n".join(lines)


def _parse_fields(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(line):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        fields[key.strip()] = value
    return fields


def parse_parameters(text: str) -> Parameters:
    """Take an A1111 ``parameters`` text apart (ours, or one written by A1111, Forge or SD.Next).

    As A1111 does: the last line is the fields line when it holds at least three ``Key: value`` pairs; the lines
    before it are the prompt, up to a line starting ``Negative prompt:``, after which they are the negative prompt.
    A separate ``Schedule type: Karras`` (A1111 1.9+) is folded into the sampler name ("DPM++ 2M" + "Karras"), as
    the studio names its Karras samplers; any other schedule type stays a field of its own.
    """
    lines = text.strip().split("\n")
    fields: dict[str, str] = {}
    if lines and len(_PAIR.findall(lines[-1])) >= 3:
        fields = _parse_fields(lines.pop())
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith(NEGATIVE_PREFIX):
            target = negative_lines
            line = line[len(NEGATIVE_PREFIX) :].lstrip()
        target.append(line)
    # The studio's samplers have Karras in their names ("DPM++ 2M Karras"); the other schedule types stay a field.
    sampler = fields.get("Sampler")
    if fields.get("Schedule type", "").lower() == "karras" and sampler and not sampler.endswith(" Karras"):
        fields["Sampler"] = f"{sampler} Karras"
        del fields["Schedule type"]
    elif fields.get("Schedule type", "").lower() == "automatic":
        del fields["Schedule type"]
    return Parameters("\n".join(prompt_lines), "\n".join(negative_lines), fields)


def png_info(parameters: str, record: Mapping[str, Any]) -> PngInfo:
    """The PNG text chunks for one image: A1111's ``parameters`` and the lossless JSON ``record``."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, parameters)
    info.add_text(STUDIO_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True))
    return info


def attach(image: Image.Image, parameters: str, record: Mapping[str, Any]) -> Image.Image:
    """Put the metadata in ``image.info`` too, where PIL-based writers (Gradio's among them) copy it from."""
    image.info[PARAMETERS_KEY] = parameters
    image.info[STUDIO_KEY] = json.dumps(record, ensure_ascii=False, sort_keys=True)
    return image


def encode_user_comment(text: str) -> bytes:
    """An EXIF ``UserComment`` value as A1111 writes it: the ``UNICODE`` code, then UTF-16 big-endian."""
    return _UNICODE_CODE + text.encode("utf-16-be")


def _utf16(payload: bytes) -> str:
    """UTF-16 text of unknown byte order. The standard says big-endian (A1111 writes that); a few writers use the
    file's little-endian byte order instead. Latin text has its zero bytes first in big-endian, second in little."""
    zeros_first = payload[0::2].count(0)
    zeros_second = payload[1::2].count(0)
    order = "utf-16-le" if zeros_second > zeros_first else "utf-16-be"
    return payload.decode(order, errors="replace")


def decode_user_comment(raw: bytes | str | None) -> str | None:
    """The text of an EXIF ``UserComment`` (any of its character codes), or None when there is none."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip("\x00") or None
    code, payload = raw[:8], raw[8:]
    if code == _UNICODE_CODE:
        text = _utf16(payload)
    elif code == _JIS_CODE:
        text = payload.decode("shift_jis", errors="replace")
    elif code in (_ASCII_CODE, _UNDEFINED_CODE):
        text = payload.decode("utf-8", errors="replace")
    else:  # no character code at all: take the bytes as they are
        text = raw.decode("utf-8", errors="replace")
    return text.strip("\x00") or None


def exif_bytes(parameters: str) -> bytes:
    """An EXIF block holding ``parameters`` in the ``UserComment`` of the EXIF sub-IFD, where A1111 puts it."""
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = encode_user_comment(parameters)
    return exif.tobytes()


def check_image_format(image_format: str) -> str:
    """``image_format`` in lower case, or a ValueError naming the formats there are."""
    name = str(image_format).strip().lower()
    name = "jpeg" if name == "jpg" else name
    if name not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    return name


def write_image(
    image: Image.Image, target: str | IO[bytes], image_format: str, parameters: str, record: Mapping[str, Any]
) -> None:
    """Save ``image`` as ``image_format`` with its metadata: PNG with the ``parameters`` and JSON chunks; JPEG and
    WebP with the ``parameters`` text in EXIF, as A1111 does (neither has a place for the JSON record)."""
    image_format = check_image_format(image_format)
    if image_format == "png":
        image.save(target, format="PNG", pnginfo=png_info(parameters, record))
        return
    picture = image.convert("RGB") if image_format == "jpeg" and image.mode not in ("RGB", "L") else image
    picture.save(target, format=IMAGE_FORMATS[image_format], quality=LOSSY_QUALITY, exif=exif_bytes(parameters))


@dataclass(frozen=True)
class ImageMetadata:
    """What an image carries: the A1111 text (parsed) and our JSON record, either of which may be missing."""

    parameters_text: str | None
    parameters: Parameters | None
    record: Mapping[str, Any] | None


def _exif_parameters(image: Image.Image) -> str | None:
    try:
        exif = image.getexif()
        comment = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    except (OSError, ValueError, SyntaxError):  # a damaged EXIF block reads as none
        return None
    return decode_user_comment(comment)


def read_metadata(image: Image.Image) -> ImageMetadata:
    """Read the metadata back from an opened image: PNG text chunks, or the EXIF ``UserComment`` of a JPEG or
    WebP (as A1111 writes it), or a JPEG comment (as some other tools do)."""
    info = getattr(image, "text", None) or image.info
    text = info.get(PARAMETERS_KEY)
    if not isinstance(text, str):
        text = _exif_parameters(image)
    if text is None and isinstance(image.info.get("comment"), bytes | str):
        comment = image.info["comment"]
        text = (comment.decode("utf-8", errors="replace") if isinstance(comment, bytes) else comment) or None
    raw_record = info.get(STUDIO_KEY)
    record = None
    if isinstance(raw_record, str):
        try:
            loaded = json.loads(raw_record)
        except json.JSONDecodeError:
            loaded = None
        record = loaded if isinstance(loaded, dict) else None
    parsed = parse_parameters(text) if text else None
    return ImageMetadata(text or None, parsed, record)
