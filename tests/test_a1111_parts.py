"""The REST API's parts on their own: names, the queue, images from JSON, ControlNet units, Basic credentials."""

from __future__ import annotations

import asyncio
import base64
import re

import pytest

from studio.api.auth import basic_user
from studio.api.controlnet import controlnet_unit
from studio.api.images import decode_image
from studio.api.progress import JobBoard, QueueFull
from studio.api.samplers import sampler_for
from studio.errors import InvalidRequest
from studio.schedulers import SAMPLER_NAMES
from studio.waiting import WaitingRoom
from tests.a1111_helpers import b64_png, square_picture
from tests.test_security import png_header_only


@pytest.mark.parametrize(
    ("sampler_name", "scheduler", "sampler", "schedule"),
    [
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras", "Automatic"),
        ("DPM++ 2M", "karras", "DPM++ 2M Karras", "Automatic"),
        ("DPM++ 2M", None, "DPM++ 2M", "Automatic"),
        ("DPM++ 2M", "Automatic", "DPM++ 2M", "Automatic"),
        ("DPM++ 2M Karras", "automatic", "DPM++ 2M Karras", "Automatic"),
        ("DPM++ 2M Karras", "Uniform", "DPM++ 2M", "Uniform"),
        ("DPM++ SDE", "Automatic", "DPM++ SDE Karras", "Automatic"),  # A1111's default schedule for this sampler
        ("euler a", None, "Euler a", "Automatic"),
        ("k_euler_a", "Automatic", "Euler a", "Automatic"),
        ("PLMS", None, "PNDM", "Automatic"),
        ("Euler", "Karras", "Euler", "Karras"),
        ("Euler", "exponential", "Euler", "Exponential"),
    ],
)
def test_a1111_sampler_and_scheduler_names(
    sampler_name: str, scheduler: str | None, sampler: str, schedule: str
) -> None:
    assert sampler_for(sampler_name, scheduler) == (sampler, schedule)


def test_every_studio_sampler_is_reachable_by_its_own_name() -> None:
    assert [sampler_for(name, None)[0] for name in SAMPLER_NAMES] == list(SAMPLER_NAMES)


@pytest.mark.parametrize(
    ("sampler_name", "scheduler", "message"),
    [
        ("Euler a", "Karras", "the Euler a sampler cannot follow the Karras schedule here; with Euler a choose one"),
        ("Euler", "cosine", "unknown scheduler 'cosine'; choose one of: Automatic, Uniform, Karras, Exponential"),
        ("LCM", "Normal", "the LCM sampler cannot follow the Normal schedule here; with LCM choose one of: Automatic"),
        ("DPM3", None, "unknown sampler_name 'DPM3'; choose one of"),
    ],
)
def test_names_the_studio_lacks_are_explained(sampler_name: str, scheduler: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        sampler_for(sampler_name, scheduler)


def test_the_queue_runs_one_job_at_a_time_and_refuses_past_its_size() -> None:
    async def scenario() -> list[str]:
        board = JobBoard(WaitingRoom(1))
        events: list[str] = []
        first_in = asyncio.Event()
        finish_first = asyncio.Event()

        async def job(name: str, hold: asyncio.Event | None = None) -> None:
            async with board.turn(f"a1111:{name}"):
                events.append(f"{name} runs")
                if hold is not None:
                    first_in.set()
                    await hold.wait()
                events.append(f"{name} done")

        first = asyncio.create_task(job("ann", finish_first))
        await first_in.wait()
        second = asyncio.create_task(job("bob"))
        await asyncio.sleep(0)  # let bob reach the queue (a scheduling point, not a timing)
        assert board.waiting_for("a1111:bob") == 1
        with pytest.raises(QueueFull, match=r"The queue is full \(--max-queue 1\); try again shortly"):
            async with board.turn("a1111:eve"):
                events.append("eve runs")
        finish_first.set()
        await asyncio.gather(first, second)
        assert board.waiting_for("a1111:bob") == 0 and board.waiting_for("a1111:eve") == 0
        return events

    assert asyncio.run(scenario()) == ["ann runs", "ann done", "bob runs", "bob done"]


def test_images_from_json_are_checked_before_decoding() -> None:
    picture = decode_image(b64_png(square_picture(), data_url=True), "init_images[0]", 50)
    assert picture.size == (64, 64)
    bomb = base64.b64encode(png_header_only(10_000, 10_000)).decode()
    with pytest.raises(InvalidRequest, match=r"mask is 10000x10000, 100 megapixels; this studio accepts up to 50"):
        decode_image(bomb, "mask", 50)
    for bad, message in [
        ("", "init_images\\[0\\] is missing"),
        (base64.b64encode(b"hello").decode(), "not an image this studio can read"),
        ("%%%not base64%%%", "not an image this studio can read|not valid base64"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            decode_image(bad, "init_images[0]", 50)


def test_controlnet_units_as_the_extension_takes_them() -> None:
    image = b64_png(square_picture())
    unit = controlnet_unit(
        {"controlnet": {"args": [{"input_image": image, "module": "Canny", "threshold_a": -1, "threshold_b": -1}]}},
        "tiny-controlnet",
        50,
        img2img=False,
    )
    assert unit is not None
    assert (unit.preprocessor, unit.low_threshold, unit.high_threshold) == ("canny", 100, 200), "-1: the defaults"
    assert unit.resize_mode == "Crop and resize" and unit.weight == 1.0
    assert controlnet_unit({"ControlNet": {"args": []}}, "x", 50, img2img=False) is None, "webuiapi's empty slot"
    for scripts, message in [
        ({"controlnet": {"args": [{"image": image}, {"image": image}]}}, "2 enabled ControlNet units"),
        ({"controlnet": {"args": [{"image": image}]}}, "ControlNet works with txt2img here"),
        ({"controlnet": {"args": [{"image": image, "resize_mode": 7}]}}, "resize_mode 7 is unknown"),
        ({"controlnet": {"args": ["canny"]}}, r"args\[0\] must be a unit object"),
        ({"controlnet": [1]}, 'must be {"args": \\[unit, ...\\]}'),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            controlnet_unit(scripts, "tiny-controlnet", 50, img2img="works with txt2img" in message)


def test_basic_credentials() -> None:
    accounts = [("ann", "pw:with:colons"), ("bob", "pw")]

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert basic_user(header("ann:pw:with:colons"), accounts) == "ann"
    assert basic_user(header("bob:pw"), accounts) == "bob"
    for wrong in (header("bob:PW"), header("bob"), header("eve:pw"), "Bearer abc", "Basic !!!", None, ""):
        assert basic_user(wrong, accounts) is None, wrong


def test_inpainting_fill_numbers_cover_the_studios_masked_content() -> None:
    from studio.api.mapping import INPAINTING_FILL
    from studio.images import MASKED_CONTENT

    assert sorted(INPAINTING_FILL.values()) == sorted(MASKED_CONTENT)
