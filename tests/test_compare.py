"""Comparisons: parsing, the word diff, batching, cells equal to txt2img, the grid and its limits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import compare
from studio.composition import Studio, build_studio
from studio.errors import InvalidRequest
from studio.metadata import read_metadata
from studio.requests import CompareRequest, Img2ImgRequest, Txt2ImgRequest
from studio.ui.zerogpu import compare_seconds
from tests.conftest import make_settings

SMALL = {"width": 64, "height": 64, "num_inference_steps": 3}
PROMPTS = ("a red cat", "a blue cat", "a red dog")


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(float)


def count_unet_calls(studio: Studio) -> list[int]:
    unet = studio.manager.current().pipeline.unet
    calls = [0]
    original = unet.forward

    def counting(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(*args, **kwargs)

    unet.forward = counting
    return calls


def test_prompts_are_one_per_line() -> None:
    assert compare.parse_prompts("a cat\n\n  a dog  \n") == ("a cat", "a dog")
    with pytest.raises(InvalidRequest, match="enter the prompts to compare"):
        compare.parse_prompts("  \n ")
    with pytest.raises(InvalidRequest, match="9 prompts; compare at most 8"):
        compare.parse_prompts("\n".join(f"p{i}" for i in range(9)))


@pytest.mark.parametrize(
    ("axis", "text", "values"),
    [
        ("Steps", "10, 20,30", (10, 20, 30)),
        ("CFG scale", "3, 7.5", (3.0, 7.5)),
        ("Seed", "1,2", (1, 2)),
        ("Sampler", "Euler a, DDIM", ("Euler a", "DDIM")),
        ("None", "", ()),
    ],
)
def test_axis_values_are_parsed(axis: str, text: str, values: tuple[object, ...]) -> None:
    assert compare.parse_axis(axis, text) == values


@pytest.mark.parametrize(
    ("axis", "text", "message"),
    [
        ("Steps", "10, twenty", "Steps values must be numbers separated by commas, e.g. 10, 20, 30; 'twenty' is not"),
        ("Steps", "10, 20.5", "Steps values must be whole numbers; '20.5' is not one"),
        ("CFG scale", "", "enter the CFG scale values to compare"),
        ("Seed", "1, 1", "the Seed values repeat one another"),
        ("Colour", "1", "axis must be one of: None, Sampler, Steps, CFG scale, Seed, Strength"),
    ],
)
def test_bad_axis_values_are_explained(axis: str, text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        compare.parse_axis(axis, text)


def test_word_diff_marks_what_differs() -> None:
    marked = compare.differing_words(["a red fox in snow", "a red fox in rain", "a red fox in snow"])
    assert [word for word, differs in marked[0] if differs] == ["snow"]
    assert [word for word, differs in marked[1] if differs] == ["rain"]
    assert [word for word, differs in marked[2] if differs] == []
    assert compare.differing_words(["alone"]) == [[("alone", False)]]


def test_grid_has_one_cell_per_image_and_room_for_the_labels() -> None:
    cells = [[Image.new("RGB", (64, 64), (i * 40, j * 40, 0)) for i in range(3)] for j in range(2)]
    grid = compare.draw_grid(cells, compare.GridLabels(columns=PROMPTS, rows=["Steps: 10", "Steps: 20"]))
    assert grid.width > 3 * 64 and grid.height > 2 * 64, "labels on both axes"
    offset_x, offset_y = grid.width - 3 * 64, grid.height - 2 * 64
    assert grid.getpixel((offset_x + 64 + 10, offset_y + 64 + 10)) == (40, 40, 0), "cell (row 1, column 1)"
    label_strip = np.asarray(grid.crop((0, offset_y, offset_x, grid.height)).convert("L"))
    assert label_strip.min() < 128, "row labels are drawn"
    header = np.asarray(grid.crop((offset_x, 0, grid.width, offset_y)).convert("L"))
    assert header.min() < 128, "column labels are drawn"


def test_prompts_run_as_one_batched_call_and_each_cell_matches_txt2img(studio: Studio) -> None:
    calls = count_unet_calls(studio)
    result = studio.service.compare(CompareRequest(PROMPTS, seed=21, **SMALL))
    assert calls[0] == 3, "one pipeline call: 3 denoising steps for all 3 prompts together"
    assert [cell.prompt for cell in result.cells] == list(PROMPTS)
    assert {cell.image.seed for cell in result.cells} == {21}, "the same seed for every prompt"
    alone = studio.service.txt2img(Txt2ImgRequest("a blue cat", seed=21, **SMALL))
    assert np.abs(array(result.cells[1].image.image) - array(alone.images[0].image)).mean() < 1.0
    assert result.cells[1].image.parameters == alone.images[0].parameters


def test_an_axis_crosses_every_prompt_with_every_value(studio: Studio) -> None:
    calls = count_unet_calls(studio)
    steps: list[tuple[int, int, int, int]] = []
    result = studio.service.compare(
        CompareRequest(PROMPTS[:2], axis="CFG scale", axis_values=(3.0, 9.0), seed=5, **SMALL),
        progress=lambda *report: steps.append(report),
    )
    assert calls[0] == 6, "one call per CFG value, each batching both prompts"
    assert [(cell.prompt, cell.axis_value) for cell in result.cells] == [
        ("a red cat", 3.0), ("a blue cat", 3.0), ("a red cat", 9.0), ("a blue cat", 9.0),
    ]  # fmt: skip
    assert "CFG scale: 9" in result.cells[3].image.parameters
    assert steps[-1] == (6, 6, 4, 4), "steps and cells done"
    assert (3, 6, 2, 4) in steps
    alone = studio.service.txt2img(Txt2ImgRequest("a blue cat", guidance_scale=9.0, seed=5, **SMALL))
    assert np.abs(array(result.cells[3].image.image) - array(alone.images[0].image)).mean() < 1.0


def test_seed_and_sampler_axes(studio: Studio) -> None:
    by_seed = studio.service.compare(CompareRequest(("a cat",), axis="Seed", axis_values=(1, 2), **SMALL))
    assert [cell.image.seed for cell in by_seed.cells] == [1, 2]
    by_sampler = studio.service.compare(
        CompareRequest(("a cat",), axis="Sampler", axis_values=("Euler", "DDIM"), seed=3, **SMALL)
    )
    assert ["Sampler: Euler," in c.image.parameters for c in by_sampler.cells] == [True, False]


def test_strength_axis_compares_image_to_image(studio: Studio) -> None:
    source = Image.new("RGB", (64, 64), (200, 100, 50))
    result = studio.service.compare(
        CompareRequest(("a cat",), axis="Strength", axis_values=(0.5, 1.0), image=source, seed=2, **SMALL)
    )
    assert ["Denoising strength: 0.5" in c.image.parameters for c in result.cells] == [True, False]
    alone = studio.service.img2img(
        Img2ImgRequest(source, "a cat", strength=0.5, resize_mode="Crop and resize", seed=2, **SMALL)
    )
    assert np.abs(array(result.cells[0].image.image) - array(alone.images[0].image)).mean() < 1.0
    with pytest.raises(InvalidRequest, match="the Strength axis compares image to image: add a source image"):
        studio.service.compare(CompareRequest(("a cat",), axis="Strength", axis_values=(0.5,), **SMALL))


def test_a_column_axis_sweeps_two_settings_against_each_other(studio: Studio) -> None:
    """A1111's X/Y plot: one prompt, samplers across and steps down; every cell is txt2img's picture."""
    result = studio.service.compare(
        CompareRequest(
            ("a cat",),
            axis="Steps",
            axis_values=(2, 3),
            column_axis="Sampler",
            column_values=("Euler", "DDIM"),
            seed=4,
            **{**SMALL, "num_inference_steps": 2},
        )
    )
    assert [(cell.axis_value, cell.column_value) for cell in result.cells] == [
        (2, "Euler"), (2, "DDIM"), (3, "Euler"), (3, "DDIM"),
    ]  # fmt: skip
    alone = studio.service.txt2img(
        Txt2ImgRequest("a cat", sampler="DDIM", seed=4, **{**SMALL, "num_inference_steps": 3})
    )
    assert np.abs(array(result.cells[3].image.image) - array(alone.images[0].image)).mean() < 1.0
    assert result.grid.image.width > 2 * 64 and result.grid.image.height > 2 * 64
    assert 'Compare columns: "Sampler: Euler, DDIM"' in result.grid.parameters


def test_zerogpu_counts_the_cells_of_both_axes() -> None:
    rows = {"prompts": "a cat", "axis": "Steps", "axis_values": "10, 20", "steps": 10, "width": 512, "height": 512}
    grid = {**rows, "column_axis": "Sampler", "column_values": "Euler, DDIM, UniPC"}
    assert compare_seconds(grid) > compare_seconds(rows)
    longer = {**grid, "axis": "CFG scale", "axis_values": "3, 7", "column_axis": "Steps", "column_values": "10, 40"}
    assert compare_seconds(longer) > compare_seconds({**longer, "column_values": "10, 20"}), "the most steps count"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompts": ("a cat", "a dog")}, "with a column axis, compare one prompt: the columns are the Sampler values"),
        ({"axis": "Sampler", "axis_values": ("DDIM",)}, "the rows and the columns both sweep Sampler"),
        ({"column_values": ()}, "enter the Sampler values of the columns"),
        ({"axis": "Steps", "axis_values": (2, 3, 4)}, r"6 cells \(2 columns x 3 rows\); .* at most 4"),
    ],
)
def test_a_column_axis_is_checked(tiny_model: Path, changes: dict[str, object], message: str) -> None:
    studio = build_studio(make_settings(tiny_model, None, max_cells=4))
    values: dict[str, object] = {"prompts": ("a cat",), "column_axis": "Sampler", "column_values": ("Euler", "DDIM")}
    with pytest.raises(InvalidRequest, match=message):
        studio.service.compare(CompareRequest(**{**values, **changes}, **SMALL))  # type: ignore[arg-type]


def test_grid_and_cells_are_saved_with_metadata(studio: Studio) -> None:
    result = studio.service.compare(CompareRequest(PROMPTS[:2], axis="Steps", axis_values=(2, 3), seed=8, **SMALL))
    assert result.grid.path is not None and result.grid.path.name.endswith("-grid.png")
    assert all(cell.image.path is not None and cell.image.path.parent.parent.name == "compare" for cell in result.cells)
    with Image.open(result.grid.path) as saved:
        meta = read_metadata(saved)
    assert meta.parameters is not None
    assert meta.parameters.fields["Compare prompts"] == "a red cat | a blue cat"
    assert meta.parameters.fields["Compare axis"] == "Steps: 2, 3"
    assert meta.record is not None and meta.record["request"]["axis_values"] == [2, 3]
    assert [d for d in result.prompt_diff[1] if d[1]] == [("blue", True)]


def test_too_many_cells_is_a_clear_message(tiny_model: Path) -> None:
    studio = build_studio(make_settings(tiny_model, None, max_cells=4))
    with pytest.raises(InvalidRequest, match=r"6 cells \(3 prompts x 2 values\); .* at most 4 per comparison"):
        studio.service.compare(CompareRequest(PROMPTS, axis="Steps", axis_values=(2, 3), **SMALL))
    with pytest.raises(InvalidRequest, match="enter 2 or more prompts"):
        studio.service.compare(CompareRequest(("a cat",), **SMALL))
    assert studio.manager.loaded is None, "refused before any model work"
