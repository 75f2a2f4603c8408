"""Prompt styles (A1111's styles.csv): read from the file, merged into the prompts as A1111 merges them, refused by
name when unknown; offered by the settings, the tabs and the A1111 API."""

import os
from pathlib import Path

import pytest

from studio.errors import InvalidRequest
from studio.settings import DEFAULT_STYLES, Settings, build_parser
from studio.styles import StyleLibrary, merge, read_styles

A1111_STYLES = (
    "\ufeffname,prompt,negative_prompt,description\n"  # Excel's byte-order mark, and a column A1111 forks add
    'Cinematic,"cinematic still of {prompt}, film grain","cartoon, drawing",moody\n'
    'Sharp,"sharp focus, 8k",blurry,\n'
    ",orphan text with no name,,\n"
)


@pytest.fixture
def styles_file(tmp_path: Path) -> Path:
    path = tmp_path / "styles.csv"
    path.write_text(A1111_STYLES, encoding="utf-8")
    return path


def test_a_style_goes_where_it_says_or_after_the_prompt() -> None:
    assert merge("cinematic still of {prompt}, film grain", "a cat") == "cinematic still of a cat, film grain"
    assert merge("sharp focus", "a cat") == "a cat, sharp focus"
    assert merge("sharp focus", "") == "sharp focus"
    assert merge("", "a cat") == "a cat"
    assert merge("{prompt}", "") == ""


def test_an_a1111_styles_file_is_read_as_it_is(styles_file: Path) -> None:
    styles = read_styles(styles_file)
    assert list(styles) == ["Cinematic", "Sharp"], "rows without a name are skipped; order kept"
    assert styles["Cinematic"].negative_prompt == "cartoon, drawing"


def test_styles_apply_in_order_to_both_prompts(styles_file: Path) -> None:
    library = StyleLibrary(styles_file)
    assert library.apply("a cat", "ugly", ["Cinematic", "Sharp"]) == (
        "cinematic still of a cat, film grain, sharp focus, 8k",
        "ugly, cartoon, drawing, blurry",
    )
    assert library.apply("a cat", "", None) == ("a cat", ""), "no styles: the prompts as they are"
    assert library.apply_to_each(["a cat", "a dog"], "ugly", ["Sharp"]) == (
        ("a cat, sharp focus, 8k", "a dog, sharp focus, 8k"),
        "ugly, blurry",
    ), "Compare: every prompt, and the one negative prompt once"
    assert library.apply_to_given("a dog", "", ["Sharp"]) == ("a dog, sharp focus, 8k", ""), (
        "hires prompts: an empty one means the first pass's, so it stays empty"
    )
    assert library.apply_to_given("", "", ["Nope"]) == ("", ""), "nothing given: nothing to style"


def test_an_unknown_style_is_a_message_naming_the_ones_there_are(styles_file: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown style 'Noir'; the styles in styles.csv are: Cinematic, Sharp"):
        StyleLibrary(styles_file).apply("a cat", "", ["Sharp", "Noir"])
    with pytest.raises(InvalidRequest, match=r"this studio has no styles file \(--styles\)"):
        StyleLibrary(None).apply("a cat", "", ["Sharp"])
    with pytest.raises(InvalidRequest, match="styles must be a list of style names"):
        StyleLibrary(styles_file).apply("a cat", "", "Sharp")


def test_the_file_is_read_again_when_it_changes_and_a_missing_one_is_no_styles(styles_file: Path) -> None:
    library = StyleLibrary(styles_file)
    assert library.names() == ["Cinematic", "Sharp"]
    styles_file.write_text('name,prompt,negative_prompt\nNoir,"{prompt}, black and white",colour\n')
    stat = styles_file.stat()
    os.utime(styles_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert library.names() == ["Noir"]
    styles_file.unlink()
    assert library.names() == []
    assert StyleLibrary(styles_file.parent / "absent.csv").names() == []


def test_the_studio_ships_styles_and_the_flag_names_another_file() -> None:
    shipped = read_styles(DEFAULT_STYLES)
    assert "Photograph" in shipped and all("{prompt}" in style.prompt for style in shipped.values())
    assert Settings.from_cli([], environ={}).styles == DEFAULT_STYLES
    assert Settings.from_cli(["--styles", "/data/styles.csv"], environ={}).styles == Path("/data/styles.csv")
    assert Settings.from_cli([], environ={"STUDIO_STYLES": ""}).styles is None, "empty: no styles"
    assert "--styles" in build_parser({}).format_help()
