import pytest

from studio.errors import InvalidRequest
from studio.requests import Txt2ImgRequest
from studio.service import validate_txt2img
from studio.validation import MAX_SEED, Limits

LIMITS = Limits(max_batch=4, max_pixels=512 * 512, max_steps=50)


def check(**fields: object) -> Txt2ImgRequest:
    return validate_txt2img(Txt2ImgRequest(**{"prompt": "a cat", **fields}), LIMITS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 500}, "width must be a multiple of 8, got 500; try 504 or 496"),
        ({"height": 63}, "height must be at least 64, got 63"),
        (
            {"width": 1024, "height": 1024},
            r"1024x1024 is 1,048,576 pixels; this studio allows at most 262,144 \(--max-pixels\)",
        ),
        ({"num_inference_steps": 0}, "steps must be between 1 and 50, got 0"),
        ({"num_inference_steps": 51}, "steps must be between 1 and 50, got 51"),
        ({"num_inference_steps": 20.5}, "steps must be a whole number, got 20.5; try 20"),
        ({"num_inference_steps": "20"}, "steps must be a whole number, got '20'"),
        ({"num_inference_steps": float("nan")}, "steps must be a whole number, got nan"),
        ({"width": float("inf")}, "width must be a whole number, got inf"),
        ({"seed": float("-inf")}, "seed must be a whole number, got -inf"),
        ({"guidance_scale": float("inf")}, r"guidance_scale \(CFG scale\) must be a number, got inf"),
        ({"batch_size": 5}, r"batch_size must be between 1 and 4 \(--max-batch\), got 5"),
        ({"guidance_scale": -1}, "guidance_scale .* must be between 0 and 30"),
        ({"seed": -2}, "seed must be -1 \\(random\\) or between 0 and 4294967295, got -2"),
        ({"seed": MAX_SEED + 1}, "seed must be -1"),
        ({"sampler": "Eular"}, "unknown sampler 'Eular'; choose one of"),
        ({"prompt": 5}, "prompt must be text, got int"),
        ({"prompt": "x" * 5000}, "prompt is 5000 characters long; the limit is 4000"),
    ],
)
def test_bad_values_say_what_to_fix(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check(**fields)


def test_whole_floats_from_sliders_are_accepted_and_normalised() -> None:
    request = check(num_inference_steps=20.0, width=64.0, height=128.0, batch_size=2.0, seed=7.0)
    assert (request.num_inference_steps, request.width, request.height, request.batch_size, request.seed) == (
        20,
        64,
        128,
        2,
        7,
    )
    assert isinstance(request.num_inference_steps, int)


def test_random_seed_is_resolved_to_a_concrete_one() -> None:
    seeds = {check(seed=-1).seed for _ in range(5)}
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    assert len(seeds) > 1


def test_none_negative_prompt_is_empty() -> None:
    assert check(negative_prompt=None).negative_prompt == ""
