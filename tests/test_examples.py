"""The examples under the generation tabs: they exist, load, fit the defaults, and are cached on Spaces only."""

import importlib.util
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from studio.examples import ASSETS, examples_for, load_examples
from studio.micro.scenes import VOCABULARY
from studio.schedulers import SAMPLER_NAMES
from studio.settings import Settings
from studio.ui.examples import add_examples
from tests.test_api import ENDPOINT_PARAMETERS

TABS = ("txt2img", "img2img", "inpaint", "controlnet", "compare")


@pytest.mark.parametrize("micro", [False, True], ids=["stable-diffusion", "micro"])
def test_every_generation_tab_has_examples_that_load_and_fit_the_defaults(micro: bool) -> None:
    examples = examples_for(micro)
    defaults = Settings()
    for tab in TABS:
        assert examples[tab], f"{tab} has examples"
        for example in examples[tab]:
            values = example.values
            prompts = values["prompts"].splitlines() if tab == "compare" else [values["prompt"]]
            assert example.label and all(prompts)
            assert set(values) <= set(ENDPOINT_PARAMETERS[f"/{tab}"]), f"{tab}: names are the handler's parameters"
            assert values["sampler"] in SAMPLER_NAMES
            assert 1 <= values["steps"] <= defaults.max_steps
            assert isinstance(values["seed"], int) and values["seed"] >= 0, "fixed seeds: a cached result is the result"
            if "width" in values:
                assert values["width"] % 8 == 0 and values["height"] % 8 == 0
                assert values["width"] * values["height"] <= defaults.max_pixels
            for key in ("image", "mask"):
                if key in values:
                    path = Path(values[key])
                    assert path.is_relative_to(ASSETS) and path.stat().st_size < 20_000, "small files in assets/"
                    with Image.open(path) as picture:
                        picture.load()
                        assert picture.format == "PNG"
                        assert not micro or picture.size == (64, 64)
            if micro:  # only what the micro model knows: its words, its size
                assert all(set(prompt.split()) <= set(VOCABULARY) for prompt in prompts), prompts
                assert (values.get("width", 64), values.get("height", 64)) == (64, 64)


def test_the_example_pictures_are_what_the_drawing_script_makes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_examples", ASSETS / "make_examples.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path)
    shipped = sorted(path.name for path in (ASSETS / "examples").iterdir())
    assert shipped == sorted(path.name for path in tmp_path.iterdir())
    for name in shipped:
        with Image.open(ASSETS / "examples" / name) as ours, Image.open(tmp_path / name) as drawn:
            assert np.array_equal(np.asarray(ours), np.asarray(drawn)), name


@pytest.mark.parametrize(("space_id", "cached"), [("", False), ("me/diffusion-studio", "lazy")])
def test_examples_are_cached_lazily_on_spaces_only(
    space_id: str, cached: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPACE_ID", space_id)
    monkeypatch.chdir(tmp_path)  # where Gradio keeps its example cache

    def txt2img(
        prompt: str, negative_prompt: str, sampler: str, steps: float, guidance_scale: float, width: float,
        height: float, seed: float, batch_size: float, image_format: str | None = None,
    ) -> str:  # fmt: skip
        return prompt

    with gr.Blocks():
        column = gr.Column()
        with column:
            inputs = [gr.Textbox(), gr.Textbox(), gr.Dropdown(list(SAMPLER_NAMES)), *(gr.Number() for _ in range(6))]
            inputs.append(gr.Radio(["png", "jpeg", "webp"], value="webp"))
            output = gr.Textbox()
        examples = add_examples(column, "txt2img", txt2img, inputs, [output], load_examples()["txt2img"])
    assert examples is not None
    assert examples.cache_examples == cached
    first = load_examples()["txt2img"][0]
    row = examples.examples[0]
    assert row[0] == first.values["prompt"] and row[7] == first.values["seed"]
    assert row[-1] == "webp", "what an example leaves out keeps the widget's value (here --save-format)"
