"""Fast paths: what makes generation fast without changing what it makes (beyond float rounding).

Always on, with no flag (each where it helps and is safe):
- half precision on GPUs (studio/devices.py picks float16 on CUDA and MPS);
- PyTorch's scaled-dot-product attention, diffusers' default: the studio only ever swaps it out for
  ``--attention-slicing``, which is off unless asked for;
- channels-last memory for the UNet and the ControlNet on CUDA, where cuDNN's NHWC kernels are the fast ones for
  half precision; on the CPU and MPS it does not help, so it is left off there;
- VAE tiling only for pictures past a size (studio/vae_decode.py), not for every decode.

``--compile`` (opt-in, because compiling costs about a minute per shape on first use):
- fused QKV projections: one matrix multiply for query, key and value instead of three. The three separate
  weights are then views into the fused one, so fusing costs no memory;
- ``torch.compile`` of the UNet and of the VAE decoder with static shapes (``dynamic=False``): each size and
  batch is compiled once, when first used (the model's native size at load), and kept: dynamo's cache of compiled
  graphs is raised to ``RECOMPILE_LIMIT`` entries so sizes already seen are never compiled again nor fall back to
  eager. Compile errors fall back to eager for that call instead of failing it.
- The compile mode is inductor's "default", without CUDA graphs: CUDA graph trees are kept per thread, and Gradio
  runs each job on one of many worker threads, so every thread would record its own graphs in its own memory
  pool. ``compile_module`` can still take another mode; bench/gpu.py measures how much of a step CUDA graphs
  could save, by replaying one UNet forward from a graph.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.utils._pytree import tree_map_only

from studio.few_step import GenerationDefaults
from studio.schedulers import build_scheduler
from studio.vae_decode import decode_latents, vae_scale_factor

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64
"""Compiled graphs kept per compiled function: sizes x batch sizes x (with or without CFG, with or without a
ControlNet's residuals). torch's default, 8, would send the ninth shape to eager for good."""
COMPILED_MARK = "_studio_compiled"


@dataclass(frozen=True)
class SpeedOptions:
    """The fast paths a model manager applies to what it loads."""

    compile: bool = False
    backend: str | Callable[..., Any] = "inductor"
    """torch.compile's backend; the tests use "eager" (dynamo's tracing and guards without code generation)."""
    mode: str = "default"
    """inductor's mode for the UNet and the VAE decoder (see the module docstring for why not reduce-overhead)."""
    channels_last: bool | None = None
    """None: on CUDA only."""

    def uses_channels_last(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.channels_last is None else self.channels_last


@dataclass
class CompileWatch:
    """How many graphs torch.compile made during a block, and how long the block took."""

    graphs_before: int
    started: float = field(default_factory=time.perf_counter)
    new_graphs: int = 0
    seconds: float = 0.0


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@contextmanager
def watch_compiles() -> Iterator[CompileWatch]:
    """Counts the graphs compiled inside the block: a new size or batch compiles, a size seen before does not."""
    watch = CompileWatch(graphs_before=compiled_graph_count())
    try:
        yield watch
    finally:
        watch.new_graphs = compiled_graph_count() - watch.graphs_before
        watch.seconds = time.perf_counter() - watch.started


def to_channels_last(module: nn.Module) -> None:
    module.to(memory_format=torch.channels_last)


def _share_fused_weights(model: nn.Module) -> None:
    """Make each attention's separate q/k/v weights views into its fused matrix, which diffusers' fusing copies
    them into, so the fused model holds one copy of them (and the two never disagree)."""
    for module in model.modules():
        if not isinstance(module, Attention) or not getattr(module, "fused_projections", False):
            continue
        fused = getattr(module, "to_qkv", None) if not module.is_cross_attention else getattr(module, "to_kv", None)
        if fused is None:
            continue
        parts = [module.to_k, module.to_v] if module.is_cross_attention else [module.to_q, module.to_k, module.to_v]
        start = 0
        for linear in parts:
            rows = linear.weight.shape[0]
            linear.weight = nn.Parameter(fused.weight.data[start : start + rows], requires_grad=False)
            if linear.bias is not None and fused.bias is not None:
                linear.bias = nn.Parameter(fused.bias.data[start : start + rows], requires_grad=False)
            start += rows


def fuse_qkv(pipeline: DiffusionPipeline) -> list[str]:
    """Fuse the QKV projections of the UNet and the VAE (sharing the weights); returns what was fused."""
    fused = []
    for name in ("unet", "vae"):
        model = getattr(pipeline, name, None)
        if model is None or not hasattr(model, "fuse_qkv_projections"):
            continue
        try:
            model.fuse_qkv_projections()
        except ValueError as error:  # models with added KV projections cannot be fused
            log.info("QKV projections of the %s not fused: %s", name, error)
            continue
        _share_fused_weights(model)
        fused.append(name)
    return fused


def compile_module(module: nn.Module, backend: str | Callable[..., Any] = "inductor", mode: str = "default") -> None:
    """Compile ``module``'s forward in place (the module object stays the same, so pipelines derived with
    ``from_pipe`` share the compiled model), with static shapes."""
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7 names
    setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly, not fails the job
    options: dict[str, Any] = {"backend": backend, "dynamic": False}
    if backend == "inductor":
        import torch._inductor.config as inductor_config

        inductor_config.conv_1x1_as_mm = True  # 1x1 convolutions (attention in/out projections) as matmuls
        options["mode"] = mode
    compiled = torch.compile(module.forward, **options)
    cuda_graphs = backend == "inductor" and mode in ("reduce-overhead", "max-autotune")

    def forward(*args: Any, **kwargs: Any) -> Any:
        # Guards check strides too: latents come back channels-last from a channels-last UNet (and contiguous from
        # an encoder or a fresh draw), and each layout would compile the same shape again. One layout in, always.
        args, kwargs = tree_map_only(torch.Tensor, _contiguous, (args, kwargs))
        if not cuda_graphs:
            return compiled(*args, **kwargs)
        # With CUDA graphs a call's outputs live in memory the next replay overwrites, and some schedulers keep
        # model outputs across steps (PNDM): copy them out, after marking a new step.
        torch.compiler.cudagraph_mark_step_begin()
        return tree_map_only(torch.Tensor, torch.clone, compiled(*args, **kwargs))

    module.forward = forward
    setattr(module, COMPILED_MARK, True)


def _contiguous(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous()


def uncompile(module: nn.Module) -> None:
    """Undo ``compile_module``: the module runs eagerly again."""
    if getattr(module, COMPILED_MARK, False):
        del module.forward
        delattr(module, COMPILED_MARK)


def is_compiled(module: nn.Module) -> bool:
    return bool(getattr(module, COMPILED_MARK, False))


def speed_up(
    pipeline: DiffusionPipeline, device: torch.device, options: SpeedOptions, attention_slicing: bool = False
) -> list[str]:
    """Apply the fast paths to a loaded pipeline in place; returns what was applied, for the log."""
    applied = []
    if options.compile and not attention_slicing:  # fusing would replace the sliced attention processors
        applied += [f"fused QKV ({name})" for name in fuse_qkv(pipeline)]
    if options.uses_channels_last(device):
        to_channels_last(pipeline.unet)
        applied.append("channels-last (unet)")
    if options.compile:
        compile_module(pipeline.unet, options.backend, options.mode)
        compile_module(pipeline.vae.decoder, options.backend, options.mode)
        applied += ["torch.compile (unet)", "torch.compile (vae decoder)"]
    return applied


def speed_up_module(module: nn.Module, device: torch.device, options: SpeedOptions, compile_it: bool) -> nn.Module:
    """The fast paths for a model loaded beside the base (a ControlNet, an inpainting UNet); returns it."""
    if options.uses_channels_last(device):
        to_channels_last(module)
    if options.compile and compile_it:
        compile_module(module, options.backend, options.mode)
    return module


@contextmanager
def plain_forward(module: nn.Module) -> Iterator[None]:
    """``module`` as plain diffusers runs it, for the block: its compiled forward set aside and its fused attention
    projections swapped for the separate ones (which share the fused weights), then both put back as they were.

    For a job that wraps some of the module's layers for itself (a LoRA): fused projections would bypass the
    separate ``to_q``/``to_k``/``to_v`` the LoRA wraps, and the compiled graph would not see the new layers or would
    compile again for every such job. Once the layers are unwrapped the compiled graphs' guards hold again, so the
    next job without them reuses what was compiled."""
    compiled = vars(module).pop("forward", None) if is_compiled(module) else None
    originals = getattr(module, "original_attn_processors", None)
    fused = (
        originals is not None
        and hasattr(module, "set_attn_processor")
        and any(isinstance(m, Attention) and getattr(m, "fused_projections", False) for m in module.modules())
    )
    saved = dict(module.attn_processors) if fused else None
    if fused:
        module.set_attn_processor(dict(originals))
    try:
        yield
    finally:
        if saved is not None:
            module.set_attn_processor(saved)
        if compiled is not None:
            module.forward = compiled


def undo_compile(pipeline: DiffusionPipeline) -> None:
    """Serve eagerly: the compiled UNet and VAE decoder go back to their plain forward."""
    uncompile(pipeline.unet)
    uncompile(pipeline.vae.decoder)


def warm_up(pipeline: DiffusionPipeline, defaults: GenerationDefaults, upcast: bool) -> CompileWatch:
    """Compile for the shape most requests have: one image at the model's native size, with CFG unless the model
    runs without (a few-step model), two steps, decoded. Returns what it compiled and how long it took."""
    side = int(pipeline.unet.config.sample_size * vae_scale_factor(pipeline.vae))
    scheduler = build_scheduler(defaults.sampler, pipeline.scheduler.config, [0])
    derived = AutoPipelineForText2Image.from_pipe(pipeline, dtype=pipeline.dtype, scheduler=scheduler)
    derived.set_progress_bar_config(disable=True)
    with watch_compiles() as watch:
        latents = derived(
            prompt="",
            num_inference_steps=2,
            guidance_scale=defaults.guidance_scale,
            width=side,
            height=side,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="latent",
        ).images
        decode_latents(pipeline.vae, pipeline.image_processor, latents, upcast=upcast)
    log.info(
        "torch.compile: %d graphs for %dx%d, one image%s, in %.1f s",
        watch.new_graphs,
        side,
        side,
        " with CFG" if defaults.guidance_scale > 1 else "",
        watch.seconds,
    )
    return watch
