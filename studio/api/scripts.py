"""The A1111 scripts the studio has, in one place: ``/sdapi/v1/scripts`` and ``/sdapi/v1/script-info`` list them.

Clients read these routes at connect time to find out what a server can do (the ControlNet extension, soft
inpainting, Ultimate SD Upscale...). A script is listed only when the studio honours it in ``alwayson_scripts``
(or ``script_name``); a feature that adds one appends its ``Script`` to ``SCRIPTS``. Pure data: no web framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio import soft_inpainting


@dataclass(frozen=True)
class ScriptArg:
    """One argument of a script, as A1111's ``/script-info`` describes a UI control."""

    label: str
    value: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Script:
    """A script by its A1111 name (lower case, as A1111 lists and matches them), the tabs that have it, whether
    it is always on (``alwayson_scripts``) or chosen (``script_name``), and its arguments in order."""

    name: str
    txt2img: bool
    img2img: bool
    is_alwayson: bool = True
    args: tuple[ScriptArg, ...] = ()


SOFT_INPAINTING = Script(
    soft_inpainting.SCRIPT_NAME,
    txt2img=False,
    img2img=True,
    args=(
        ScriptArg(soft_inpainting.ENABLED_LABEL, False),
        *(ScriptArg(s.label, s.default, s.minimum, s.maximum, s.step) for s in soft_inpainting.SETTINGS),
        # A1111's pixel-composite arguments, whose default is the only value the studio takes: their range says so,
        # so clients that read the ranges send what works.
        *(
            ScriptArg(label.capitalize(), default, default, default)
            for label, default in soft_inpainting.PIXEL_COMPOSITE_DEFAULTS
        ),
    ),
)
"""A1111 1.8's soft inpainting, its seven arguments in A1111's order (``soft_inpainting.from_script_args``)."""

SCRIPTS: tuple[Script, ...] = (
    # The sd-webui-controlnet extension's units (alwayson_scripts.controlnet.args): text to image only here.
    Script("controlnet", txt2img=True, img2img=False),
    SOFT_INPAINTING,
)
"""Every script the studio honours; append to it where a feature adds one."""


def scripts_list(scripts: tuple[Script, ...] = SCRIPTS) -> dict[str, list[str]]:
    """``GET /sdapi/v1/scripts``: the script names of each tab."""
    return {
        "txt2img": [script.name for script in scripts if script.txt2img],
        "img2img": [script.name for script in scripts if script.img2img],
    }


def script_info(scripts: tuple[Script, ...] = SCRIPTS) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/script-info``: one entry per script and tab (A1111 lists a script of both tabs twice)."""
    entries = []
    for script in scripts:
        for is_img2img in (False, True):
            if (script.img2img if is_img2img else script.txt2img) is False:
                continue
            args = [
                {
                    "label": arg.label,
                    "value": arg.value,
                    "minimum": arg.minimum,
                    "maximum": arg.maximum,
                    "step": arg.step,
                    "choices": list(arg.choices) if arg.choices is not None else None,
                }
                for arg in script.args
            ]
            entries.append(
                {"name": script.name, "is_alwayson": script.is_alwayson, "is_img2img": is_img2img, "args": args}
            )
    return entries
