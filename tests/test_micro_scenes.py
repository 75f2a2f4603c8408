"""The micro domain and its detector: scenes reproduce from their seeds, and the detector reads clean scenes
exactly (so what it measures on generated pictures is the model, not the detector)."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.micro.detect import detect, edge_f1, edge_map
from studio.micro.scenes import COLOURS, SHAPES, parse_caption, scene_for_seed


def test_a_seed_always_draws_the_same_scene() -> None:
    first, again, other = scene_for_seed(7), scene_for_seed(7), scene_for_seed(8)
    assert first.caption == again.caption
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))
    assert first.image.size == (64, 64)


def test_captions_name_what_is_drawn() -> None:
    captions = Counter()
    for seed in range(200):
        scene = scene_for_seed(seed)
        background, objects = parse_caption(scene.caption)
        assert background == scene.background
        ordered = sorted(scene.shapes, key=lambda shape: shape.centre[0])
        assert objects == tuple((shape.colour, shape.kind) for shape in ordered)
        assert scene.background not in {colour for colour, _ in objects}
        captions[len(objects)] += 1
    assert set(captions) == {1, 2}, "one and two shapes both occur"
    assert scene_for_seed(3, shape_count=2).caption.count(" and ") == 1


def test_bad_captions_are_named() -> None:
    with pytest.raises(ValueError, match="does not end with '<colour> background'"):
        parse_caption("a red circle")
    with pytest.raises(ValueError, match="the circle has no colour before it"):
        parse_caption("a circle on a blue background")


def test_the_detector_reads_clean_scenes_exactly() -> None:
    seen = Counter()
    for seed in range(300):
        scene = scene_for_seed(seed)
        found = detect(scene.image)
        assert found.background == scene.background, scene.caption
        assert len(found.blobs) == len(scene.shapes), scene.caption
        for shape in scene.shapes:
            (blob,) = [blob for blob in found.blobs if blob.colour == shape.colour]
            assert blob.shape == shape.kind, scene.caption
            seen[shape.kind, shape.colour] += 1
    assert {kind for kind, _ in seen} == set(SHAPES)
    assert {colour for _, colour in seen} <= set(COLOURS)


def test_the_detector_ignores_specks_and_reads_a_hand_drawn_square() -> None:
    image = Image.new("RGB", (64, 64), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 40, 40), fill=(40, 170, 60))
    draw.point((55, 55), fill=(220, 30, 30))  # one red pixel: noise, not a shape
    found = detect(image)
    assert found.background == "white"
    assert [(blob.colour, blob.shape) for blob in found.blobs] == [("green", "square")]


def test_edge_f1_is_one_for_the_same_edges_and_low_for_others() -> None:
    scene, other = scene_for_seed(1), scene_for_seed(2)
    edges = edge_map(scene.image)
    assert edge_f1(edges, edges) == 1.0
    assert edge_f1(edge_map(other.image), edges) < 0.5
    assert edge_f1(np.zeros_like(edges), edges) == 0.0
