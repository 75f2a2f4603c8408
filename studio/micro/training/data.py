"""The scenes a run trains on, drawn fresh and seeded, and the small pieces every stage shares: its budget
(``Stage``), learning-rate schedule, optimizer step and the detector's agreement score."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from torch.nn.functional import l1_loss

from studio.micro.detect import detect, edge_map
from studio.micro.scenes import Scene, scene_for_seed, to_array


class SceneStream:
    """Fresh scenes in seed order from ``first_seed``: every sample of a run is new, and every run the same.

    ``two_shape_share`` of them have two shapes (the rest one); None leaves it to each scene's seed (half and
    half). Two-shape scenes are where the model goes wrong (small shapes, two colours to bind), so training can
    show them more often than the evaluation does.
    """

    def __init__(self, first_seed: int, two_shape_share: float | None = None) -> None:
        self.next_seed = first_seed
        self.two_shape_share = two_shape_share
        self.counts = random.Random(first_seed)

    def _shape_count(self) -> int | None:
        if self.two_shape_share is None:
            return None
        return 2 if self.counts.random() < self.two_shape_share else 1

    def take(self, count: int) -> list[Scene]:
        scenes = [scene_for_seed(self.next_seed + i, self._shape_count()) for i in range(count)]
        self.next_seed += count
        return scenes


def pixels(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> torch.Tensor:
    """Scenes as a (n, 3, 64, 64) tensor in [-1, 1] on ``device``, as the VAE takes them."""
    array = np.stack([to_array(scene.image) for scene in scenes]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)


def edges(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> torch.Tensor:
    """Canny edge maps as (n, 3, 64, 64) in [0, 1] on ``device``: what the ControlNet pipeline feeds a ControlNet."""
    maps = np.stack([edge_map(scene.image) for scene in scenes]).astype(np.float32)
    return torch.from_numpy(maps)[:, None].repeat(1, 3, 1, 1).to(device)


def to_images(batch: torch.Tensor) -> list[np.ndarray]:
    array = ((batch.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(array)


def edge_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences: per-pixel losses barely punish a soft edge,
    this does, and a soft edge is what turns a square into a circle for the detector (and for the eye)."""

    def differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]

    (rx, ry), (tx, ty) = differences(reconstruction), differences(target)
    return l1_loss(rx, tx) + l1_loss(ry, ty)


def descend(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    lr: float,
    parameters: list[torch.nn.Parameter] | None = None,
    ema: EMAModel | None = None,
) -> None:
    """One optimiser step at ``lr``, the same in every stage; the denoisers (given their ``parameters`` and
    ``ema``) also clip gradients to norm 1 and update their moving average."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if parameters is not None:
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    if ema is not None and parameters is not None:
        ema.step(parameters)


def learning_rate(base: float, step: int, fraction: float, warmup: int = 100) -> float:
    """Linear warm-up, then a cosine from ``base`` down to a tenth of it as the stage's time runs out."""
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def shape_agreement(scenes: Sequence[Scene], images: Iterable[np.ndarray]) -> tuple[float, float]:
    """(colour accuracy, shape accuracy) of the detector on ``images`` against the scenes they came from."""
    colours = shapes = total = 0
    for scene, image in zip(scenes, images, strict=True):
        found = detect(image)
        for shape in scene.shapes:
            total += 1
            match = [blob for blob in found.blobs if blob.colour == shape.colour]
            colours += bool(match) and found.background == scene.background
            shapes += bool(match) and match[0].shape == shape.kind
    return colours / total, shapes / total


def ranks_above(check: dict[str, float], other: dict[str, float]) -> bool:
    """Whether a VAE check is better than another: more shapes right, then more colours."""
    return (check["shape"], check["colour"]) > (other["shape"], other["colour"])


class Stage:
    """A timed training loop: steps until its compute time (or wall time, or the step cap) is spent.

    Time is counted as this process's CPU time, not wall time: on a machine shared with other work the run takes
    longer but trains as much as it would alone, so the model does not depend on what else was running. A wall
    limit still bounds it.
    """

    def __init__(self, name: str, cpu_seconds: float, wall_seconds: float, max_steps: int | None) -> None:
        self.name, self.cpu_seconds, self.wall_seconds, self.max_steps = name, cpu_seconds, wall_seconds, max_steps
        self.started = time.monotonic()
        self.started_cpu = time.process_time()
        self.step = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def elapsed_cpu(self) -> float:
        return time.process_time() - self.started_cpu

    @property
    def fraction(self) -> float:
        by_cpu = self.elapsed_cpu / self.cpu_seconds if self.cpu_seconds > 0 else 1.0
        by_wall = self.elapsed / self.wall_seconds if self.wall_seconds > 0 else 1.0
        by_steps = self.step / self.max_steps if self.max_steps else 0.0
        return max(by_cpu, by_wall, by_steps)

    def running(self) -> bool:
        return self.fraction < 1.0

    def summary(self) -> dict[str, object]:
        return {"steps": self.step, "seconds": round(self.elapsed), "cpu_seconds": round(self.elapsed_cpu)}
