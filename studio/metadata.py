"""PNG metadata: A1111's ``parameters`` text, plus a lossless JSON chunk of the request.

The ``parameters`` text is what every tool in the ecosystem reads (A1111's PNG Info, Civitai, Forge, image
browsers), so it is written exactly as A1111 writes it::

    a cat in a hat
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd15

That text is lossy (numbers are rounded for reading, fields are free-form), so the full request also goes into a
``diffusion-studio`` chunk as JSON, from which a generation can be repeated exactly. This module is pure Python and
PIL: no torch, so it can read metadata anywhere.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "diffusion-studio"
NEGATIVE_PREFIX = "Negative prompt:"

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
    A separate ``Schedule type`` (A1111 1.8+) is folded into the sampler name ("DPM++ 2M" + "Karras").
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
    schedule = fields.pop("Schedule type", None)
    sampler = fields.get("Sampler")
    if schedule and schedule.lower() not in ("automatic", "uniform") and sampler and not sampler.endswith(schedule):
        fields["Sampler"] = f"{sampler} {schedule}"
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


@dataclass(frozen=True)
class ImageMetadata:
    """What an image carries: the A1111 text (parsed) and our JSON record, either of which may be missing."""

    parameters_text: str | None
    parameters: Parameters | None
    record: Mapping[str, Any] | None


def read_metadata(image: Image.Image) -> ImageMetadata:
    """Read the metadata back from an opened image (PNG text chunks)."""
    info = getattr(image, "text", None) or image.info
    text = info.get(PARAMETERS_KEY)
    raw_record = info.get(STUDIO_KEY)
    record = None
    if isinstance(raw_record, str):
        try:
            loaded = json.loads(raw_record)
        except json.JSONDecodeError:
            loaded = None
        record = loaded if isinstance(loaded, dict) else None
    parsed = parse_parameters(text) if isinstance(text, str) else None
    return ImageMetadata(text if isinstance(text, str) else None, parsed, record)
