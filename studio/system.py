"""What the header and its System panel ask of the studio: the models on disk, switching, the memory status,
and unloading. Knows no Gradio; the web layer runs switching and unloading on the GPU queue, so they never overlap
a generation (and the manager waits for a running job all the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from studio.embeddings import embedding_files
from studio.loading import display_name
from studio.model_catalog import ModelEntry, list_models, resolve_choice
from studio.model_manager import LoadedModel, ModelManager
from studio.module_cache import module_bytes
from studio.settings import Settings

_EXTRA_KINDS = {"controlnet": "ControlNet", "inpaint-unet": "inpainting UNet"}


@dataclass(frozen=True)
class DeviceMemory:
    """One memory pool: its name, bytes in use and in all, and what the studio's process holds of it."""

    name: str
    used: int
    total: int
    held: str = ""

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)


@dataclass(frozen=True)
class LoadedItem:
    """Something the studio keeps in memory: what it is, its name, its size in bytes, where it lives."""

    kind: str
    name: str
    size: int
    where: str


@dataclass(frozen=True)
class MemoryStatus:
    devices: tuple[DeviceMemory, ...]
    loaded: tuple[LoadedItem, ...]


def format_bytes(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _device_memory(device: torch.device) -> DeviceMemory | None:
    try:
        return _read_device_memory(device)
    except (RuntimeError, AssertionError) as error:  # e.g. ZeroGPU: this process holds no GPU between requests
        return DeviceMemory(f"GPU ({device.type})", 0, 0, f"not readable from this process ({type(error).__name__})")


def _read_device_memory(device: torch.device) -> DeviceMemory | None:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        held = (
            f"PyTorch: {format_bytes(torch.cuda.memory_allocated(device))} allocated, "
            f"{format_bytes(torch.cuda.memory_reserved(device))} reserved"
        )
        return DeviceMemory(f"GPU ({torch.cuda.get_device_name(device)})", total - free, total, held)
    if device.type == "mps":
        total = psutil.virtual_memory().total  # Apple Silicon: the GPU shares the machine's memory
        held = f"PyTorch: {format_bytes(torch.mps.current_allocated_memory())} allocated"
        return DeviceMemory("GPU (Apple MPS, shared memory)", torch.mps.driver_allocated_memory(), total, held)
    return None


def _pipeline_bytes(model: LoadedModel) -> int:
    components = model.pipeline.components.values()
    return sum(module_bytes(c) for c in components if isinstance(c, torch.nn.Module))


class SystemService:
    """Models on disk and in memory, for the header's picker and the System panel."""

    def __init__(self, settings: Settings, manager: ModelManager) -> None:
        self.settings = settings
        self.manager = manager

    def models(self) -> list[ModelEntry]:
        """The models in ``--models-dir`` (the LoRA folder left out), read again on every call."""
        return list_models(
            self.settings.models_dir, allow_pickle=self.settings.allow_pickle, skip=self.settings.lora_folder
        )

    def choices(self) -> tuple[list[tuple[str, str]], str]:
        """The picker's (label, value) choices and the value of the model that serves. The serving model is a
        choice even when it is not in the models folder (a Hub id, or ``--model`` elsewhere)."""
        entries = self.models()
        serving = self.manager.source
        options = [(entry.label, entry.choice) for entry in entries]
        for entry in entries:
            if _same_path(entry.source, serving):
                return options, entry.choice
        return [(display_name(serving), display_name(serving)), *options], display_name(serving)

    def switch(self, choice: object) -> LoadedModel:
        """Load the chosen model and serve it. Raises ``InvalidRequest`` for a choice the picker does not offer
        and ``ModelLoadError`` when it does not load; either way the serving model keeps serving.

        The picker's values are names (``choices``): a model of the models folder by its place in it, the model
        the studio was started with or serves by its display name, which maps back to its source here."""
        entries = self.models()
        started = {display_name(source): source for source in (self.settings.model, self.manager.source)}
        listed = isinstance(choice, str) and any(choice.strip() == entry.choice for entry in entries)
        if isinstance(choice, str) and not listed and choice.strip() in started:
            choice = started[choice.strip()]
        return self.manager.switch(resolve_choice(choice, entries, tuple(started.values())))

    def unload(self) -> None:
        """Free every model; the next generation loads the serving model again."""
        self.manager.unload()

    def embedding_names(self) -> list[str]:
        """The embeddings a prompt may name: the loaded model's, or before it loads the files it will read."""
        model = self.manager.loaded
        if model is not None:
            return model.embeddings.names()
        return sorted(file.name for file in embedding_files(self.manager.embeddings_dir))

    def refresh_embeddings(self) -> None:
        """Give the loaded model the embedding files added since it loaded (waits for the running job)."""
        self.manager.refresh_embeddings()

    def memory(self) -> MemoryStatus:
        """Memory in use and free (the GPU when there is one, and the machine's), and what the studio holds."""
        devices: list[DeviceMemory] = []
        gpu = _device_memory(self.manager.placement.device)
        if gpu is not None:
            devices.append(gpu)
        ram = psutil.virtual_memory()
        rss = psutil.Process().memory_info().rss
        devices.append(
            DeviceMemory("CPU (RAM)", ram.total - ram.available, ram.total, f"this studio: {format_bytes(rss)}")
        )
        loaded: list[LoadedItem] = []
        where = self.manager.placement.device.type
        model = self.manager.loaded
        if model is not None:
            loaded.append(
                LoadedItem(f"model ({model.family})", display_name(model.source), _pipeline_bytes(model), where)
            )
        for (kind, source), size in self.manager.extras.sizes():
            loaded.append(LoadedItem(_EXTRA_KINDS.get(kind, kind), display_name(source), size, where))
        for lora in self.manager.lora_weights.cached():
            loaded.append(LoadedItem("LoRA file", lora.name, lora.size, "cpu"))
        return MemoryStatus(tuple(devices), tuple(loaded))


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return a == b


def model_line(manager: ModelManager) -> str:
    """The header's model line: the loaded model, its family, dtype and device; or what loads on first use."""
    placement = manager.placement
    dtype = str(placement.dtype).removeprefix("torch.")
    loaded = manager.loaded
    if loaded is not None:
        return f"**Model:** {display_name(loaded.source)} · {loaded.family} · {dtype} · {placement.device.type}"
    return (
        f"**Model:** {display_name(manager.source)} · {dtype} · {placement.device.type} — "
        "not loaded: loads on the next generation"
    )


def describe_memory(status: MemoryStatus) -> str:
    """The memory status as Markdown: a line per memory pool, then a table of what is loaded."""
    lines = [
        f"**{device.name}:** {format_bytes(device.used)} used, {format_bytes(device.free)} free of "
        f"{format_bytes(device.total)}" + (f" ({device.held})" if device.held else "")
        if device.total
        else f"**{device.name}:** {device.held}"
        for device in status.devices
    ]
    if not status.loaded:
        lines.append("\nNo models loaded.")
    else:
        lines.append("\n| Loaded | Name | Size | On |\n|---|---|---|---|")
        lines.extend(f"| {i.kind} | {i.name} | {format_bytes(i.size)} | {i.where} |" for i in status.loaded)
    return "\n".join(lines)
