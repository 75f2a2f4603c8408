"""The fast paths make the same pictures as the plain path, and --compile compiles each shape once.

The tiny model runs on the CPU, so these force what the studio turns on only on CUDA (channels-last), and compile
with dynamo's "eager" backend: the same tracing, guards and graph cache as inductor, without generating code
(inductor takes minutes per shape on these CPUs; bench/gpu.py compiles for real on a GPU).
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

from studio.composition import Studio, build_studio
from studio.devices import resolve_placement
from studio.fast_paths import SpeedOptions, compile_module, fuse_qkv, is_compiled, uncompile, watch_compiles
from studio.loading import MemoryOptions
from studio.model_manager import ModelManager
from studio.requests import Img2ImgRequest, Txt2ImgRequest
from studio.settings import Settings
from studio.vae_decode import TILE_ABOVE_PIXELS, decode_latents, should_tile
from tests.conftest import make_settings
from tests.tiny_model import build_tiny_pipeline, save_tiny_sdxl_model

CPU = resolve_placement("cpu", "auto")
FAST = SpeedOptions(compile=True, backend="eager", channels_last=True)
REQUEST = Txt2ImgRequest("a red house by the sea", num_inference_steps=2, seed=5, width=64, height=64)


def pixels(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def studio_with(model: Path, speed: SpeedOptions) -> Studio:
    settings = make_settings(model, None)
    manager = ModelManager(str(model), CPU, speed=speed, memory=MemoryOptions())
    return build_studio(settings, manager)


def storage_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages behind a module's parameters (shared storage counted once)."""
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in module.parameters()}
    return sum(storages.values())


@pytest.fixture(scope="module")
def plain(tiny_model: Path) -> Studio:
    return studio_with(tiny_model, SpeedOptions())


@pytest.fixture(scope="module")
def fast(tiny_model: Path) -> Iterator[Studio]:
    """The tiny model with every fast path on (compiled at load for its native 64x64 size, as --compile does)."""
    torch._dynamo.reset()
    studio = studio_with(tiny_model, FAST)
    studio.manager.current()
    yield studio
    torch._dynamo.reset()


def test_plain_defaults_keep_sdpa_and_no_extras_on_the_cpu(plain: Studio) -> None:
    unet = plain.manager.current().pipeline.unet
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert not is_compiled(unet)
    assert not unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_fast_paths_are_applied(fast: Studio) -> None:
    model = fast.manager.current()
    unet, vae = model.pipeline.unet, model.pipeline.vae
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in unet.attn_processors.values())
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert is_compiled(unet) and is_compiled(vae.decoder)
    assert model.source in fast.manager.compile_seconds, "the load compiled the native size"


def test_fast_path_makes_the_plain_paths_pictures(plain: Studio, fast: Studio) -> None:
    expected = plain.service.txt2img(REQUEST)
    result = fast.service.txt2img(REQUEST)
    for got, want in zip(result.images, expected.images, strict=True):
        assert np.abs(pixels(got.image) - pixels(want.image)).max() <= 2, "equal within float rounding"
    assert result.seeds == expected.seeds


def test_compile_happens_once_per_shape(plain: Studio, fast: Studio) -> None:
    """The native size was compiled at load; a new size compiles on first use (and says so), never again."""
    wide = Txt2ImgRequest("a cat", num_inference_steps=2, seed=1, width=96, height=64)
    with watch_compiles() as watch:
        result = fast.service.txt2img(wide)
    assert watch.new_graphs > 0
    assert any("The first run at 96x64 with 1 image(s) compiled the model" in note for note in result.notes)
    for request in (wide, REQUEST):
        with watch_compiles() as watch:
            again = fast.service.txt2img(request)
        assert watch.new_graphs == 0, f"{request.width}x{request.height} was compiled before"
        assert not any("compiled" in note for note in again.notes)
    want = plain.service.txt2img(wide).images[0].image
    assert np.abs(pixels(result.images[0].image) - pixels(want)).max() <= 2


def test_another_task_reuses_the_compiled_shape(plain: Studio, fast: Studio) -> None:
    """Image to image hands the UNet latents in another memory layout; the same shape must not compile again."""
    picture = plain.service.txt2img(REQUEST).images[0].image
    request = Img2ImgRequest(picture, "a blue house", num_inference_steps=4, strength=0.5, seed=2, width=64, height=64)
    with watch_compiles() as watch:
        got = fast.service.img2img(request)
    assert watch.new_graphs == 0
    want = plain.service.img2img(request)
    assert np.abs(pixels(got.images[0].image) - pixels(want.images[0].image)).max() <= 2


def test_a_failing_compiler_falls_back_to_eager() -> None:
    calls: list[int] = []

    def broken_backend(graph: object, inputs: object) -> object:
        calls.append(1)
        raise RuntimeError("no C++ compiler on this machine")

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 1))
    sample = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        expected = module(sample)
        compile_module(module, backend=broken_backend)
        assert is_compiled(module)
        outputs = [module(sample) for _ in range(3)]
    assert all(torch.equal(output, expected) for output in outputs)
    assert calls == [1], "tried once, then eager for good"
    uncompile(module)
    assert not is_compiled(module)


def test_fused_projections_share_the_weights(tmp_path: Path) -> None:
    pipeline = build_tiny_pipeline(tmp_path)
    before = storage_bytes(pipeline.unet) + storage_bytes(pipeline.vae)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain_output = pipeline.unet(sample, 10, text).sample
        assert fuse_qkv(pipeline) == ["unet", "vae"]
        fused_output = pipeline.unet(sample, 10, text).sample
    assert storage_bytes(pipeline.unet) + storage_bytes(pipeline.vae) == before, "no second copy of q, k and v"
    attention = next(m for m in pipeline.unet.modules() if isinstance(m, Attention) and not m.is_cross_attention)
    assert attention.to_q.weight.untyped_storage().data_ptr() == attention.to_qkv.weight.untyped_storage().data_ptr()
    assert torch.allclose(fused_output, plain_output, atol=1e-5)


def test_vae_tiling_starts_past_the_threshold(tmp_path: Path) -> None:
    pipeline = build_tiny_pipeline(tmp_path)
    vae, processor = pipeline.vae, pipeline.image_processor  # downsamples by 2, tiles of 64 pixels
    small = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    large = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(0))
    assert not should_tile(vae, large), "96x96 is far below the default threshold"
    assert should_tile(vae, torch.zeros(1, 4, 769, 768)) and not should_tile(vae, torch.zeros(1, 4, 768, 768))
    assert TILE_ABOVE_PIXELS == 1536 * 1536
    tiled_calls: list[tuple[int, ...]] = []
    original = vae.tiled_decode

    def spy(z: torch.Tensor, *args: object, **kwargs: object) -> object:
        tiled_calls.append(tuple(z.shape))
        return original(z, *args, **kwargs)

    vae.tiled_decode = spy
    (whole,), _ = decode_latents(vae, processor, large)
    (below,), _ = decode_latents(vae, processor, small, tile_above_pixels=64 * 64)
    assert tiled_calls == [], "at or below the threshold the decode is whole"
    (tiled,), _ = decode_latents(vae, processor, large, tile_above_pixels=64 * 64)
    assert tiled_calls == [(1, 4, 48, 48)]
    assert not vae.use_tiling, "tiling was on for that decode only"
    assert tiled.size == whole.size == (96, 96)
    assert below.size == (64, 64)


def test_only_sdxl_vaes_decode_in_float32(tiny_model: Path, tmp_path: Path) -> None:
    """SD 1.x VAE configs leave force_upcast at its default, True; diffusers' SD pipelines ignore it, so must we."""
    sd = ModelManager(str(tiny_model), CPU).current()
    assert sd.pipeline.vae.config.force_upcast and not sd.upcasts_vae
    sdxl = ModelManager(str(save_tiny_sdxl_model(tmp_path / "tiny-sdxl")), CPU).current()
    assert sdxl.upcasts_vae


def test_channels_last_is_for_cuda_only() -> None:
    options = SpeedOptions()
    assert options.uses_channels_last(torch.device("cuda"))
    assert not options.uses_channels_last(torch.device("cpu"))
    assert not options.uses_channels_last(torch.device("mps"))


def test_an_inpainting_base_compiles_on_first_use_not_at_load(tiny_inpaint_model: Path) -> None:
    """Its UNet takes 9 channels: a text-to-image warm-up would fail and turn compile off for nothing."""
    manager = ModelManager(str(tiny_inpaint_model), CPU, speed=FAST)
    model = manager.current()
    assert is_compiled(model.pipeline.unet)
    assert manager.compile_seconds == {}


def test_settings_turn_compile_on(tiny_model: Path) -> None:
    studio = build_studio(Settings(model=str(tiny_model), device="cpu", outputs=None, compile=True))
    assert studio.manager.speed.compile and studio.manager.loaded is None, "compiles at load, not at start"
