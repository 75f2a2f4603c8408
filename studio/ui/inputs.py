"""What an API caller may send each input, checked before Gradio converts it.

Gradio converts each value an event receives with its widget's ``preprocess`` before the handler runs, outside the
handler's error adapter (``studio/ui/errors.py``). A value the widget cannot convert then fails there: ``NaN`` for
a seed, ``"abc"`` for steps or ``"inf"`` for the CFG scale reached the client as ``{"error": null}`` or as "the
upstream Gradio app has raised an exception", and a prompt sent as a list was silently turned into text. The page
never sends such values, but raw HTTP and ``gradio_client`` can.

``CheckedBlocks`` checks every raw value against what its widget declares (a number slider: a finite number, whole
when its step is, within its range; a text box: text; a choice: one of the choices; a checkbox: true or false; an
image: a file), names the value by the handler's parameter name (the API's name for it), and says how to fix it,
as the REST API's checks do. The service's own checks still run on everything that passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from gradio.block_function import BlockFunction
    from gradio.state_holder import SessionState

Payload = Any
"""A value as the client sent it, before Gradio converts it: anything JSON can carry."""


def describe(value: Payload) -> str:
    """A value as a client would recognise what it sent (JSON's names for the numbers JSON has no digits for)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 60 else f"{text[:57]}...'"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object (dict)"
    return f"a {type(value).__name__}"


def _number_text(value: float) -> str:
    return f"{value:g}"


def _whole_numbers_only(block: gr.Slider | gr.Number) -> bool:
    """Whether the widget only ever holds whole numbers: a precision of 0, or a slider that steps by whole numbers
    from a whole minimum."""
    if isinstance(block, gr.Number):
        return block.precision == 0
    step, low = block.step, block.minimum
    return step is not None and float(step).is_integer() and low is not None and float(low).is_integer()


def _suggestion(block: gr.components.Component) -> str:
    """ "; try <the widget's starting value>", when it has one to offer."""
    value = block.value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
        return f"; try {_number_text(value)}"
    return ""


def check_number(name: str, block: gr.Slider | gr.Number, value: Payload) -> None:
    """A finite number (not a boolean or a numeral in quotes), whole where the widget is, within its range."""
    whole = _whole_numbers_only(block)
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        fix = _suggestion(block)
        if isinstance(value, str) and _is_numeral(value):
            fix = f"; send {value.strip()} as a number, without quotes"
        raise gr.Error(f"{name} must be {kind}, got {describe(value)}{fix}", print_exception=False)
    if isinstance(value, float) and not math.isfinite(value):
        raise gr.Error(f"{name} must be {kind}, got {describe(value)}{_suggestion(block)}", print_exception=False)
    if whole and not float(value).is_integer():
        raise gr.Error(
            f"{name} must be a whole number, got {describe(value)}; try {round(value)}", print_exception=False
        )
    low, high = block.minimum, block.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            allowed = f"between {_number_text(low)} and {_number_text(high)}"
        else:
            allowed = f"at least {_number_text(low)}" if low is not None else f"at most {_number_text(high)}"  # type: ignore[arg-type]
        raise gr.Error(f"{name} must be {allowed}, got {describe(value)}", print_exception=False)


def _is_numeral(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_text(name: str, value: Payload) -> None:
    """Text or nothing; anything else would be turned into its Python text ("['a', 'b']") and drawn."""
    if value is not None and not isinstance(value, str):
        raise gr.Error(f"{name} must be text, got {describe(value)}; send it as a string", print_exception=False)


def check_flag(name: str, value: Payload) -> None:
    if not isinstance(value, bool):
        raise gr.Error(f"{name} must be true or false, got {describe(value)}", print_exception=False)


def _choice_values(block: gr.Dropdown | gr.Radio | gr.CheckboxGroup) -> list[Any]:
    return [value for _, value in block.choices]


def check_choice(name: str, block: gr.Dropdown | gr.Radio | gr.CheckboxGroup, value: Payload) -> None:
    """One of the choices (a list of them for a multiple choice), as Gradio checks it, with the input named."""
    if isinstance(block, gr.Dropdown) and block.allow_custom_value:
        return
    choices = _choice_values(block)
    many = isinstance(block, gr.CheckboxGroup) or (isinstance(block, gr.Dropdown) and block.multiselect)
    listed = ", ".join(repr(choice) for choice in choices)
    if many:
        if value is None and not isinstance(block, gr.CheckboxGroup):
            return
        if not isinstance(value, list):
            raise gr.Error(
                f"{name} must be a list of choices from: {listed}; got {describe(value)}", print_exception=False
            )
        wrong = [item for item in value if item not in choices]
        if wrong:
            raise gr.Error(
                f"{name}: {describe(wrong[0])} is not in the list of choices; choose from: {listed}",
                print_exception=False,
            )
        return
    if value is not None and value not in choices:
        raise gr.Error(
            f"{name}: {describe(value)} is not in the list of choices; choose one of: {listed}", print_exception=False
        )


def check_file(name: str, value: Payload) -> None:
    """A file as Gradio sends one (``{"path": ...}`` or ``{"url": ...}``, what ``handle_file`` makes), or nothing."""
    if value is not None and not isinstance(value, dict):
        raise gr.Error(
            f"{name} must be an image file, got {describe(value)}; send it with gradio_client's handle_file(path), "
            'or as {"path": ...} after uploading it to /gradio_api/upload, or as {"url": ...}',
            print_exception=False,
        )


def check_value(name: str, block: Any, value: Payload) -> None:
    """Raise a ``gr.Error`` naming ``name`` when ``value`` is not what ``block`` takes."""
    if isinstance(block, gr.Slider | gr.Number):
        check_number(name, block, value)
    elif isinstance(block, gr.Textbox):
        check_text(name, value)
    elif isinstance(block, gr.Checkbox):
        check_flag(name, value)
    elif isinstance(block, gr.Dropdown | gr.Radio | gr.CheckboxGroup):
        check_choice(name, block, value)
    elif isinstance(block, gr.Image | gr.ImageEditor):
        check_file(name, value)


def input_names(block_fn: BlockFunction) -> list[str]:
    """The names the API gives an event's inputs: its handler's parameter names, else the widgets' labels."""
    names: Sequence[str | None] = getattr(block_fn, "input_parameter_names", None) or ()
    result = []
    for index, block in enumerate(block_fn.inputs):
        name = names[index] if index < len(names) else None
        result.append(name or str(getattr(block, "label", None) or f"input {index + 1}"))
    return result


def check_payloads(block_fn: BlockFunction, inputs: list[Payload], state: SessionState | None = None) -> None:
    """Check the raw values of one call of ``block_fn`` against its input widgets (this session's copies where a
    handler updated them, as Gradio's own conversion reads them)."""
    if block_fn.batch:
        return
    names = input_names(block_fn)
    if len(inputs) < len(block_fn.inputs):
        where = f"/{block_fn.api_name}" if block_fn.api_name else "this event"
        raise gr.Error(
            f"{where} takes {len(block_fn.inputs)} values, in this order: {', '.join(names)}; got {len(inputs)}. "
            "Send them all (gradio_client fills in the defaults).",
            print_exception=False,
        )
    prop_inputs = getattr(block_fn, "component_prop_inputs", ()) or ()
    for index, (block, name) in enumerate(zip(block_fn.inputs, names, strict=True)):
        if index in prop_inputs or block.stateful:  # a property's update, or a gr.State the page never sends
            continue
        if state is not None and block._id in state:
            block = state[block._id]
        check_value(name, block, inputs[index])


class CheckedBlocks(gr.Blocks):
    """``gr.Blocks`` whose every event checks its raw values (``check_payloads``) before Gradio converts them.

    ``preprocess_data`` is where Gradio converts an event's values, for the page, the API, the MCP server and
    examples alike, with the event and its session at hand; it is Gradio's own method, not a documented hook, so
    ``tests/test_input_probes.py`` fails if a Gradio release stops calling it."""

    async def preprocess_data(
        self, block_fn: BlockFunction, inputs: list[Payload], state: SessionState | None, *args: Any, **kwargs: Any
    ) -> Any:
        check_payloads(block_fn, inputs, state)
        return await super().preprocess_data(block_fn, inputs, state, *args, **kwargs)
