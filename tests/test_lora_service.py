"""LoRAs through the service: they change the image, apply to one request only (never to the next one, never to
another user's), work in every generation task, and are recorded in the metadata as A1111 records them."""

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import FusedAttnProcessor2_0
from peft.tuners.tuners_utils import BaseTunerLayer
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from studio.composition import Studio, build_studio
from studio.devices import resolve_placement
from studio.errors import InvalidRequest
from studio.fast_paths import SpeedOptions, is_compiled, watch_compiles
from studio.lab import Lab, RaceRequest, TrajectoryRequest
from studio.loras import LoraSpec
from studio.metadata import read_metadata
from studio.model_manager import ModelManager
from studio.requests import CompareRequest, ControlNetRequest, Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from tests.conftest import make_settings
from tests.tiny_lora import save_tiny_lora
from tests.tiny_model import save_tiny_sdxl_model


@pytest.fixture(scope="module")
def lora_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ink`` in kohya's layout (as A1111 users have them), ``wash`` in diffusers' layout, ``misfit`` made for
    wider attention than the tiny model's (as an SDXL LoRA is for an SD 1.x model), and a damaged file."""
    folder = tmp_path_factory.mktemp("loras")
    save_tiny_lora(tiny_model, folder / "ink.safetensors", seed=1)
    save_tiny_lora(tiny_model, folder / "wash.safetensors", seed=2, layout="diffusers")
    misfit = load_file(folder / "ink.safetensors")
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in misfit if k.endswith("attn2_to_k.lora_down.weight")]:
        misfit[key] = torch.randn((4, 64), generator=generator)  # the tiny UNet's text features are 32 wide
    save_file(misfit, folder / "misfit.safetensors")
    (folder / "damaged.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json}")
    return folder


FAST = {"width": 64, "height": 64, "num_inference_steps": 2}


def new_studio(tiny_model: Path, tiny_controlnet: Path, lora_dir: Path, outputs: Path | None) -> Studio:
    return build_studio(make_settings(tiny_model, outputs, lora_dir=lora_dir, controlnet_model=str(tiny_controlnet)))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def txt2img(studio: Studio, prompt: str, seed: int = 7) -> np.ndarray:
    return pixels(studio.service.txt2img(Txt2ImgRequest(prompt=prompt, seed=seed, **FAST)).images[0].image)


@pytest.fixture(scope="module")
def reference(tiny_model: Path, tiny_controlnet: Path, lora_dir: Path) -> dict[str, np.ndarray]:
    """Images made once, each by a studio that had applied no LoRA before it: what every later request with the
    same prompt (LoRA tags included) must give, bit for bit."""
    made = {}
    for prompt in ("a red house", "a red house <lora:ink:1>", "a red house <lora:wash:1>"):
        made[prompt] = txt2img(new_studio(tiny_model, tiny_controlnet, lora_dir, None), prompt)
    return made


@pytest.fixture(scope="module")
def lora_studio(
    tiny_model: Path, tiny_controlnet: Path, lora_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Studio:
    """One studio for the module's requests, with and without LoRAs, one after the other as users send them."""
    return new_studio(tiny_model, tiny_controlnet, lora_dir, tmp_path_factory.mktemp("lora-outputs"))


def lora_layers(studio: Studio) -> int:
    pipeline = studio.manager.current().pipeline
    return sum(isinstance(m, BaseTunerLayer) for c in (pipeline.unet, pipeline.text_encoder) for m in c.modules())


@pytest.mark.parametrize("name", ["ink", "wash"])
def test_a_lora_changes_the_image_and_is_gone_on_the_next_request(
    lora_studio: Studio, reference: dict[str, np.ndarray], name: str
) -> None:
    plain = reference["a red house"]
    with_lora = txt2img(lora_studio, f"a red house <lora:{name}:1>")
    assert np.abs(with_lora.astype(int) - plain.astype(int)).mean() > 1.0, "the LoRA changes the image"
    assert np.array_equal(with_lora, reference[f"a red house <lora:{name}:1>"]), "and reproduces"
    assert lora_layers(lora_studio) == 0, "no LoRA layer is left on the shared modules"
    assert np.array_equal(txt2img(lora_studio, "a red house"), plain), "bit-identical to before any LoRA"


def test_the_weight_scales_the_lora_and_the_tag_never_reaches_the_text_encoder(
    lora_studio: Studio, reference: dict[str, np.ndarray]
) -> None:
    plain, full = reference["a red house"], reference["a red house <lora:ink:1>"]
    assert np.array_equal(txt2img(lora_studio, "a red house <lora:ink:0>"), plain), "weight 0, and no tag text"
    half = txt2img(lora_studio, "a red house <lora:ink:0.5>")
    assert not np.array_equal(half, full) and not np.array_equal(half, plain)


def test_two_loras_at_once_and_loras_given_as_a_field(lora_studio: Studio, reference: dict[str, np.ndarray]) -> None:
    both = txt2img(lora_studio, "a red house <lora:ink:1> <lora:wash:1>")
    assert not np.array_equal(both, reference["a red house <lora:ink:1>"])
    assert not np.array_equal(both, reference["a red house <lora:wash:1>"])
    result = lora_studio.service.txt2img(
        Txt2ImgRequest(prompt="a red house <lora:ink:1>", loras=(LoraSpec("wash", 1.0),), seed=7, **FAST)
    )
    assert np.array_equal(pixels(result.images[0].image), both)
    assert result.request.prompt == "a red house <lora:ink:1> <lora:wash:1>", "recorded as tags, as A1111 does"


def test_metadata_keeps_the_tag_and_records_lora_hashes(lora_studio: Studio, lora_dir: Path) -> None:
    result = lora_studio.service.txt2img(Txt2ImgRequest(prompt="a red house <lora:ink:0.8>", seed=9, **FAST))
    data = (lora_dir / "ink.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    short = hashlib.sha256(data[8 + header :]).hexdigest()[:12]
    parameters = result.images[0].parameters
    assert parameters.startswith("a red house <lora:ink:0.8>\nSteps: 2,")
    assert f'Lora hashes: "ink: {short}", Version: ' in parameters
    assert result.images[0].path is not None
    with Image.open(result.images[0].path) as saved:
        meta = read_metadata(saved)
    assert meta.parameters is not None and meta.parameters.fields["Lora hashes"] == f"ink: {short}"
    assert meta.record is not None and meta.record["request"]["loras"] == [{"name": "ink", "weight": 0.8}]


def test_unknown_lora_lists_the_ones_there_are(tiny_model: Path, tiny_controlnet: Path, lora_dir: Path) -> None:
    studio = new_studio(tiny_model, tiny_controlnet, lora_dir, None)
    with pytest.raises(InvalidRequest) as caught:
        studio.service.txt2img(Txt2ImgRequest(prompt="a cat <lora:inc:1>", **FAST))
    assert str(caught.value) == (
        "Unknown LoRA 'inc'. The LoRAs there are: damaged, ink, misfit, wash. Check the spelling in <lora:inc:...>."
    )
    assert studio.manager.loaded is None, "refused before any model was loaded or the GPU taken"


@pytest.mark.parametrize(
    ("name", "message"),
    [("misfit", "does not fit the loaded model \\(SD 1.x\\)"), ("damaged", "could not be read")],
)
def test_a_lora_that_does_not_load_is_explained_and_leaves_nothing_behind(
    lora_studio: Studio, reference: dict[str, np.ndarray], name: str, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        txt2img(lora_studio, f"a red house <lora:ink:1> <lora:{name}:1>")
    assert lora_layers(lora_studio) == 0
    assert np.array_equal(txt2img(lora_studio, "a red house"), reference["a red house"])


class ObservedLock:
    """The manager's GPU lock, telling the test when a second job is waiting for it."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.waiting = threading.Event()
        self._holders = 0

    def __enter__(self) -> None:
        if self._holders:
            self.waiting.set()
        self._lock.acquire()
        self._holders += 1

    def __exit__(self, *exc: object) -> None:
        self._holders -= 1
        self._lock.release()


def run_while_first_is_denoising(studio: Studio, first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    """Start ``first``; at its first denoising step, start ``second`` from another thread (another user) and let
    ``first`` go on only once ``second`` waits for the GPU. Returns both images."""
    lock = ObservedLock(studio.manager._gpu_lock)
    studio.manager._gpu_lock = lock  # type: ignore[assignment]
    results: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def other_user() -> None:
        try:
            results["second"] = txt2img(studio, second)
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=other_user)

    def on_step(done: int, _total: int) -> None:
        if done == 1:
            worker.start()
            assert lock.waiting.wait(timeout=60), "the second request reached the GPU lock"

    request = Txt2ImgRequest(prompt=first, seed=7, **FAST)
    results["first"] = pixels(studio.service.txt2img(request, progress=on_step).images[0].image)
    worker.join(timeout=120)
    assert not errors, errors
    return results["first"], results["second"]


@pytest.mark.parametrize("lora_first", [True, False])
def test_a_lora_never_reaches_a_concurrent_request_of_another_user(
    tiny_model: Path, tiny_controlnet: Path, lora_dir: Path, reference: dict[str, np.ndarray], lora_first: bool
) -> None:
    studio = new_studio(tiny_model, tiny_controlnet, lora_dir, None)
    prompts = ("a red house <lora:ink:1>", "a red house")
    first, second = run_while_first_is_denoising(studio, *(prompts if lora_first else prompts[::-1]))
    with_lora, without = (first, second) if lora_first else (second, first)
    assert np.array_equal(without, reference["a red house"]), "the other user's image is the one made with no LoRA"
    assert np.array_equal(with_lora, reference["a red house <lora:ink:1>"]), "the LoRA user's is the one made alone"


def _inputs() -> tuple[Image.Image, Image.Image]:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    return picture, mask


TASKS: dict[str, Callable[[Studio, str], Image.Image]] = {
    "img2img": lambda s, p: (
        s.service.img2img(
            Img2ImgRequest(_inputs()[0], p, width=64, height=64, strength=1.0, seed=3, num_inference_steps=2)
        )
        .images[0]
        .image
    ),
    "inpaint": lambda s, p: (
        s.service.inpaint(InpaintRequest(*_inputs(), prompt=p, strength=1.0, seed=3, num_inference_steps=2))
        .images[0]
        .image
    ),
    "controlnet": lambda s, p: (
        s.service.controlnet(ControlNetRequest(_inputs()[0], p, width=64, height=64, seed=3, num_inference_steps=2))
        .images[0]
        .image
    ),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_loras_apply_in_every_generation_task(lora_studio: Studio, task: str) -> None:
    run = TASKS[task]
    with_lora = run(lora_studio, "a blue sky <lora:ink:1>")
    assert "Lora hashes: " in with_lora.info["parameters"]
    assert not np.array_equal(pixels(with_lora), pixels(run(lora_studio, "a blue sky")))


def test_a_lora_stays_on_through_the_hires_fixs_second_pass(lora_studio: Studio) -> None:
    unet = lora_studio.manager.current().pipeline.unet
    original = unet.forward
    seen: list[int] = []

    def forward(*args: object, **kwargs: object) -> object:
        seen.append(sum(isinstance(m, BaseTunerLayer) for m in unet.modules()))
        return original(*args, **kwargs)

    unet.forward = forward
    try:
        result = lora_studio.service.txt2img(
            Txt2ImgRequest(prompt="a red house <lora:ink:1>", seed=7, enable_hr=True, hr_scale=1.5, **FAST)
        )
    finally:
        del unet.forward
    assert result.images[0].image.size == (96, 96) and "Lora hashes" in result.images[0].parameters
    assert len(seen) == 2 + 1 and all(layers > 0 for layers in seen), "2 steps, then 1 of 2 (strength 0.7)"
    assert lora_layers(lora_studio) == 0, "taken off after the job, second pass and all"


def test_compare_applies_each_cells_loras_to_that_cell_only(
    lora_studio: Studio, reference: dict[str, np.ndarray]
) -> None:
    prompts = ("a red house", "a red house <lora:ink:1>")
    result = lora_studio.service.compare(CompareRequest(prompts=prompts, seed=7, **FAST))
    plain, styled = (pixels(cell.image.image) for cell in result.cells)
    assert np.array_equal(plain, reference["a red house"]), "the cell without the tag has no LoRA"
    assert np.array_equal(styled, reference["a red house <lora:ink:1>"])
    assert "Lora hashes" in result.cells[1].image.parameters and "Lora hashes" not in result.cells[0].image.parameters
    with pytest.raises(InvalidRequest, match="Unknown LoRA 'nope'"):
        lora_studio.service.compare(CompareRequest(prompts=("a <lora:nope:1>", "b"), **FAST))


def test_the_labs_generations_take_lora_tags_as_txt2img_does(
    lora_studio: Studio, reference: dict[str, np.ndarray]
) -> None:
    """The Lab films and races the picture txt2img makes for the same prompt, LoRA tags included: the LoRA is on
    the weights for that run only and its tag never reaches the text encoder."""
    lab = Lab(lora_studio.manager, lora_studio.service.limits, lora_studio.service.loras)
    prompt = "a red house <lora:ink:1>"
    filmed = lab.trajectory(TrajectoryRequest(prompt=prompt, seed=7, every=1, **FAST))
    assert np.array_equal(pixels(filmed.image), reference[prompt])
    raced = lab.sampler_race(
        RaceRequest(prompt=prompt, samplers=(filmed.request.sampler,), rerun=False, seed=7, **FAST)
    )
    assert np.array_equal(pixels(raced.entries[0].image), reference[prompt])
    assert lora_layers(lora_studio) == 0, "no LoRA layer is left on the shared modules"
    plain = lab.trajectory(TrajectoryRequest(prompt="a red house", seed=7, every=1, **FAST))
    assert np.array_equal(pixels(plain.image), reference["a red house"])
    with pytest.raises(InvalidRequest, match="Unknown LoRA 'nope'"):
        lab.trajectory(TrajectoryRequest(prompt="a <lora:nope:1>", every=1, **FAST))
    with pytest.raises(InvalidRequest, match="lora"):
        lab.sampler_race(RaceRequest(prompt="a <lora:ink:heavy>", **FAST))


def test_sdxl_loras_reach_the_unet_and_both_text_encoders(tmp_path: Path) -> None:
    model = save_tiny_sdxl_model(tmp_path / "tiny-sdxl")
    save_tiny_lora(model, tmp_path / "lora" / "xl-style.safetensors", seed=4)  # lora_te1_/lora_te2_ keys
    studio = build_studio(make_settings(model, None, lora_dir=tmp_path / "lora"))
    plain = txt2img(studio, "a red house")
    pipeline = studio.manager.current().pipeline
    touched: list[str] = []
    originals = {name: getattr(pipeline, name).forward for name in ("text_encoder", "text_encoder_2")}

    def spy(name: str) -> Callable[..., object]:
        def forward(*args: object, **kwargs: object) -> object:
            layers = sum(isinstance(m, BaseTunerLayer) for m in getattr(pipeline, name).modules())
            touched.append(f"{name}:{layers}")
            return originals[name](*args, **kwargs)

        return forward

    for name in originals:
        getattr(pipeline, name).forward = spy(name)
    try:
        styled = txt2img(studio, "a red house <lora:xl-style:1>")
    finally:
        for name in originals:
            delattr(getattr(pipeline, name), "forward")
    assert {entry.split(":")[0] for entry in touched} == {"text_encoder", "text_encoder_2"}
    assert all(int(entry.split(":")[1]) > 0 for entry in touched), "both encoders ran with LoRA layers on"
    assert not np.array_equal(styled, plain)
    assert np.array_equal(txt2img(studio, "a red house"), plain)


def test_with_compile_a_lora_job_runs_eagerly_and_the_compiled_model_serves_on_unchanged(
    tiny_model: Path, lora_dir: Path, reference: dict[str, np.ndarray]
) -> None:
    """--compile fuses the attention projections and compiles the UNet (dynamo's "eager" backend here, as in
    test_fast_paths.py): a LoRA job runs on the separate projections it wraps, without compiling anything, and
    the next job without a LoRA runs on the same fused, compiled UNet with nothing compiled again."""
    torch._dynamo.reset()
    manager = ModelManager(str(tiny_model), resolve_placement("cpu", "auto"), speed=SpeedOptions(True, "eager"))
    studio = build_studio(make_settings(tiny_model, None, lora_dir=lora_dir), manager)
    try:
        plain = txt2img(studio, "a red house")  # the load compiled 64x64
        unet = manager.current().pipeline.unet
        with watch_compiles() as during:
            styled = txt2img(studio, "a red house <lora:ink:1>")
        with watch_compiles() as after:
            again = txt2img(studio, "a red house")
    finally:
        torch._dynamo.reset()
    assert np.abs(styled.astype(int) - reference["a red house <lora:ink:1>"].astype(int)).max() <= 2
    assert not np.array_equal(styled, plain)
    assert (during.new_graphs, after.new_graphs) == (0, 0)
    assert is_compiled(unet) and all(isinstance(p, FusedAttnProcessor2_0) for p in unet.attn_processors.values())
    assert np.array_equal(again, plain)
