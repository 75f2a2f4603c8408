"""Batch count (A1111's n_iter) in the tabs: batches one after another, seeds continuing from batch to batch, as one
result; every picture is the one its seeds make alone."""

import threading

import numpy as np
import pytest

from studio.batches import nth_batch, run_batches
from studio.composition import Studio
from studio.errors import Cancelled, InvalidRequest
from studio.requests import Txt2ImgRequest
from studio.ui.zerogpu import generation_seconds
from tests.conftest import SMALL


def pixels(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_batches_continue_the_seeds_and_come_back_as_one_result(studio: Studio) -> None:
    steps: list[tuple[int, int]] = []
    request = Txt2ImgRequest(prompt="a red house", sampler="Euler", seed=10, batch_size=2, **SMALL)
    made = run_batches(studio.service.txt2img, request, 3, studio.service.limits, progress=lambda *s: steps.append(s))
    assert made.seeds == (10, 11, 12, 13, 14, 15)
    assert len({item.path for item in made.images}) == 6, "each saved"
    assert steps[-1] == (12, 12) and steps == sorted(steps), "the steps of all three batches, in order"
    alone = studio.service.txt2img(Txt2ImgRequest(prompt="a red house", sampler="Euler", seed=14, **SMALL))
    assert np.abs(pixels(made.images[4].image) - pixels(alone.images[0].image)).mean() < 1.0


def test_a_random_seed_is_drawn_once_for_all_batches(studio: Studio) -> None:
    made = run_batches(studio.service.txt2img, Txt2ImgRequest(prompt="x", **SMALL), 3, studio.service.limits)
    first = made.seeds[0]
    assert made.seeds == (first, first + 1, first + 2)


def test_with_a_variation_the_seed_stays_and_the_variation_seed_continues(studio: Studio) -> None:
    request = Txt2ImgRequest(prompt="x", seed=4, subseed=50, subseed_strength=0.3, batch_size=2, **SMALL)
    made = run_batches(studio.service.txt2img, request, 2, studio.service.limits)
    assert made.seeds == (4, 4, 4, 4)
    assert [item.subseed for item in made.images] == [50, 51, 52, 53]
    assert nth_batch(request, 1).subseed == 52 and nth_batch(request, 1).seed == 4


def test_a_count_of_one_is_the_plain_call_and_bad_counts_are_messages(studio: Studio) -> None:
    request = Txt2ImgRequest(prompt="x", seed=3, **SMALL)
    assert run_batches(studio.service.txt2img, request, 1, studio.service.limits).seeds == (3,)
    with pytest.raises(InvalidRequest, match=r"batch count \(n_iter\) must be between 1 and 8, got 9"):
        run_batches(studio.service.txt2img, request, 9, studio.service.limits)
    with pytest.raises(InvalidRequest, match="batch count \\(n_iter\\) must be a whole number, got 1.5"):
        run_batches(studio.service.txt2img, request, 1.5, studio.service.limits)
    last = Txt2ImgRequest(prompt="x", seed=2**32 - 2, batch_size=2, **SMALL)
    with pytest.raises(InvalidRequest, match="seed 4294967294 leaves no room for 2 batches of 2"):
        run_batches(studio.service.txt2img, last, 2, studio.service.limits)


def test_stop_ends_the_run_and_the_batches_before_it_are_kept(studio: Studio) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > total // 2:  # in the second of two batches
            cancel.set()

    request = Txt2ImgRequest(prompt="x", seed=30, **SMALL)
    with pytest.raises(Cancelled):
        run_batches(studio.service.txt2img, request, 2, studio.service.limits, progress=progress, cancel=cancel)
    outputs = studio.settings.outputs
    assert outputs is not None
    assert [path.name.split("-")[-1] for path in outputs.rglob("*.png")] == ["30.png"], "the first batch's picture"


def test_zerogpu_asks_for_time_for_every_batch() -> None:
    one = generation_seconds({"steps": 25, "width": 512, "height": 512, "batch_size": 2})
    three = generation_seconds({"steps": 25, "width": 512, "height": 512, "batch_size": 2, "batch_count": 3})
    assert three > one
