"""Batch count, as A1111 has it: a request run several times in a row (``n_iter``), each a batch of its own size,
the seeds continuing from one batch to the next, so that many pictures can be made without more memory.

Batch *k* starts at seed ``seed + k * batch_size``; with a variation seed it keeps the seed and starts at variation
seed ``subseed + k * batch_size``, as A1111 counts. Every picture is thus the one its seeds make alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from studio.errors import InvalidRequest
from studio.requests import GenerationRequest, GenerationResult
from studio.validation import MAX_SEED, Limits, check_batch_size, check_range, check_variation, resolve_seed

Generate = Callable[..., GenerationResult]
"""A service method: ``generate(request, progress=, cancel=, preview=, **options)``."""


def nth_batch(request: GenerationRequest, index: int) -> GenerationRequest:
    """Batch ``index`` of ``request`` (its seeds resolved): its seeds follow those of the batches before it."""
    offset = index * request.batch_size
    if request.subseed_strength:
        return replace(request, subseed=request.subseed + offset)
    return replace(request, seed=request.seed + offset)


def check_batch_count(count: object, first_seed: int, varied: bool, batch_size: int, limits: Limits) -> int:
    """A batch count of 1 to ``--max-batch``, with room below A1111's last seed for every batch's seeds
    (``first_seed`` is the seed, or with ``varied`` the variation seed, the first batch starts at)."""
    batches = check_range("batch count (n_iter)", count, 1, limits.max_batch)
    name = "subseed" if varied else "seed"
    if batches > 1 and first_seed + (batches - 1) * batch_size > MAX_SEED:
        raise InvalidRequest(
            f"{name} {first_seed} leaves no room for {batches} batches of {batch_size} (seeds end at {MAX_SEED}); "
            f"choose a lower {name}"
        )
    return batches


def run_batches(
    generate: Generate,
    request: GenerationRequest,
    count: object,
    limits: Limits,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> GenerationResult:
    """``count`` batches of ``request`` one after the other, as one result (the images of all, in order). Random
    seeds are drawn once, before the first. Progress counts the steps of all batches; a Stop ends the run."""
    if count == 1:
        return generate(request, progress=progress, **options)
    batch_size = check_batch_size(request.batch_size, limits)
    subseed, strength = check_variation(request.subseed, request.subseed_strength)
    request = replace(
        request, seed=resolve_seed(request.seed), subseed=subseed, subseed_strength=strength, batch_size=batch_size
    )
    first = request.subseed if strength else request.seed
    batches = check_batch_count(count, first, bool(strength), batch_size, limits)
    results: list[GenerationResult] = []
    for index in range(batches):

        def report(done: int, total: int, before: int = index) -> None:
            if progress is not None:
                progress(before * total + done, batches * total)

        results.append(generate(nth_batch(request, index), progress=report, **options))
    notes = tuple(dict.fromkeys(note for result in results for note in result.notes))
    images = tuple(image for result in results for image in result.images)
    return replace(results[0], images=images, notes=notes, model=results[-1].model)
