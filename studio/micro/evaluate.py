"""Measure the micro model: ``python -m studio.micro.evaluate [--model assets/micro] [--write-card]``.

Fixed prompts and seeds (captions of held-out scenes no training run ever drew), the studio's default sampler
and CFG scale, 20 steps; the detector reads the pictures back:

- text to image: background colour accuracy, foreground colour accuracy (each named shape's colour is found)
  and shape accuracy (the largest region of that colour has the named shape);
- inpainting: one shape of a two-shape scene is masked and the prompt asks for "a green square" there; a
  green region must appear inside the mask, and outside it the picture must keep its colours;
- ControlNet: edge F1 of the generated picture's Canny edges against the control edges, with the ControlNet
  and without it (same prompt, same seed);
- time per 64x64 picture (20 steps, batch 1, CFG on).

It prints one JSON object; ``--write-card`` also writes the figures into the model card (README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)
from PIL import Image, ImageDraw, ImageFilter

from studio.micro.detect import colour_labels, detect, edge_f1, edge_map
from studio.micro.location import CONTROLNET_SUBFOLDER, MICRO_FOLDER
from studio.micro.scenes import COLOURS, Scene, caption_for, parse_caption, scene_for_seed
from studio.micro.training.config import EVAL_SEED_BASE
from studio.schedulers import DEFAULT_SAMPLER, build_scheduler

STEPS = 20
GUIDANCE_SCALE = 7.0
"""The studio's default CFG scale: the figures describe what a user gets without changing anything."""
CARD_START, CARD_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


@dataclass(frozen=True)
class TextScore:
    background: bool
    colours: tuple[bool, ...]
    shapes: tuple[bool, ...]


def score_text_to_image(image: Image.Image | np.ndarray, caption: str) -> TextScore:
    """What the detector confirms of ``caption`` in ``image``."""
    background, objects = parse_caption(caption)
    found = detect(image)
    colours, shapes = [], []
    for colour, shape in objects:
        match = [blob for blob in found.blobs if blob.colour == colour]
        colours.append(bool(match))
        shapes.append(bool(match) and match[0].shape == shape)
    return TextScore(found.background == background, tuple(colours), tuple(shapes))


def load(model: Path, threads: int) -> tuple[StableDiffusionPipeline, ControlNetModel]:
    torch.set_num_threads(threads)
    pipeline = StableDiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    controlnet = ControlNetModel.from_pretrained(model / CONTROLNET_SUBFOLDER, dtype=torch.float32)
    return pipeline, controlnet


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _with_sampler(pipeline: StableDiffusionPipeline, seed: int) -> StableDiffusionPipeline:
    pipeline.scheduler = build_scheduler(DEFAULT_SAMPLER, pipeline.scheduler.config, [seed])
    return pipeline


def text_to_image(pipeline: StableDiffusionPipeline, caption: str, seed: int) -> Image.Image:
    _with_sampler(pipeline, seed)
    return pipeline(
        caption, num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE, generator=_generator(seed)
    ).images[0]


def evaluation_scenes(count: int, first: int, shape_count: int | None = None) -> list[Scene]:
    return [scene_for_seed(EVAL_SEED_BASE + first + i, shape_count) for i in range(count)]


def evaluate_text_to_image(pipeline: StableDiffusionPipeline, count: int) -> dict[str, float]:
    scores = [
        score_text_to_image(text_to_image(pipeline, scene.caption, seed), scene.caption)
        for seed, scene in enumerate(evaluation_scenes(count, 100_000))
    ]
    colours = [hit for score in scores for hit in score.colours]
    shapes = [hit for score in scores for hit in score.shapes]
    return {
        "prompts": count,
        "background_accuracy": float(np.mean([score.background for score in scores])),
        "foreground_colour_accuracy": float(np.mean(colours)),
        "shape_accuracy": float(np.mean(shapes)),
    }


def inpaint_case(scene: Scene) -> tuple[Image.Image, Image.Image, str]:
    """(picture, mask, prompt): the left shape of a two-shape scene masked, to become a green square."""
    left, right = sorted(scene.shapes, key=lambda shape: shape.centre[0])
    mask = Image.new("L", scene.image.size, 0)
    cx, cy = left.centre
    reach = left.radius * 1.25 + 2
    ImageDraw.Draw(mask).rectangle((cx - reach, cy - reach, cx + reach, cy + reach), fill=255)
    square = type(left)("square", "green", left.centre, left.radius)
    return scene.image, mask, caption_for(scene.background, (square, right))


def inpaint_scores(original: Image.Image, mask: Image.Image, result: Image.Image) -> tuple[float, bool, float]:
    """(share of the masked pixels that are green, whether a green shape sits in the mask, share of the pixels
    well outside the mask that keep their colour)."""
    inside = np.asarray(mask) > 127
    labels = colour_labels(result)
    green = COLOURS.index("green")
    share = float((labels[inside] == green).mean())
    found = [blob for blob in detect(result).blobs if blob.colour == "green"]
    in_mask = any(inside[int(blob.centre[1]), int(blob.centre[0])] for blob in found)
    margin = np.asarray(mask.filter(ImageFilter.MaxFilter(7))) > 127  # the mask's edge blends either way
    kept = float((labels[~margin] == colour_labels(original)[~margin]).mean())
    return share, in_mask, kept


def evaluate_inpaint(pipeline: StableDiffusionPipeline, count: int) -> dict[str, float]:
    inpaint = StableDiffusionInpaintPipeline.from_pipe(pipeline, dtype=pipeline.dtype)
    inpaint.set_progress_bar_config(disable=True)
    cases = [scene for scene in evaluation_scenes(count * 4, 200_000, shape_count=2) if _green_free(scene)][:count]
    shares, successes, kept = [], [], []
    for seed, scene in enumerate(cases):
        image, mask, prompt = inpaint_case(scene)
        _with_sampler(inpaint, seed)
        result = inpaint(
            prompt,
            image=image,
            mask_image=mask,
            strength=1.0,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE_SCALE,
            generator=_generator(seed),
            height=64,
            width=64,
        ).images[0]
        share, success, keep = inpaint_scores(image, mask, result)
        shares.append(share)
        successes.append(success)
        kept.append(keep)
    return {
        "cases": len(cases),
        "green_in_mask_rate": float(np.mean(successes)),
        "masked_green_share": float(np.mean(shares)),
        "outside_kept_share": float(np.mean(kept)),
    }


def _green_free(scene: Scene) -> bool:
    return scene.background != "green" and all(shape.colour != "green" for shape in scene.shapes)


def evaluate_controlnet(pipeline: StableDiffusionPipeline, controlnet: ControlNetModel, count: int) -> dict[str, float]:
    guided = StableDiffusionControlNetPipeline.from_pipe(pipeline, controlnet=controlnet, dtype=pipeline.dtype)
    guided.set_progress_bar_config(disable=True)
    with_control, without = [], []
    for seed, scene in enumerate(evaluation_scenes(count, 300_000)):
        control = edge_map(scene.image)
        control_image = Image.fromarray((control * 255).astype(np.uint8)).convert("RGB")
        _with_sampler(guided, seed)
        image = guided(
            scene.caption,
            image=control_image,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE_SCALE,
            generator=_generator(seed),
        ).images[0]
        with_control.append(edge_f1(edge_map(image), control))
        without.append(edge_f1(edge_map(text_to_image(pipeline, scene.caption, seed)), control))
    return {
        "prompts": count,
        "edge_f1_with_controlnet": float(np.mean(with_control)),
        "edge_f1_without_controlnet": float(np.mean(without)),
    }


def time_per_image(pipeline: StableDiffusionPipeline, repeats: int = 7) -> dict[str, float]:
    text_to_image(pipeline, "a red circle on a blue background", 0)  # warm-up
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        text_to_image(pipeline, "a yellow star and a green square on a black background", seed)
        times.append(time.perf_counter() - started)
    return {
        "seconds_median": round(statistics.median(times), 3),
        "seconds_min": round(min(times), 3),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def evaluate(model: Path, prompts: int = 48, inpaints: int = 16, controls: int = 16, threads: int = 1) -> dict:
    pipeline, controlnet = load(model, threads)
    return {
        "model": model.name,
        "steps": STEPS,
        "guidance_scale": GUIDANCE_SCALE,
        "sampler": DEFAULT_SAMPLER,
        "text_to_image": evaluate_text_to_image(pipeline, prompts),
        "inpaint": evaluate_inpaint(pipeline, inpaints),
        "controlnet": evaluate_controlnet(pipeline, controlnet, controls),
        "time_per_64px_image": time_per_image(pipeline),
    }


def card_section(figures: dict) -> str:
    """The evaluation figures as the model card shows them."""
    text, inpaint, control, speed = (
        figures["text_to_image"],
        figures["inpaint"],
        figures["controlnet"],
        figures["time_per_64px_image"],
    )
    rows = [
        ("Background colour accuracy", f"{text['background_accuracy']:.0%}", ">= 95%"),
        ("Foreground colour accuracy", f"{text['foreground_colour_accuracy']:.0%}", ">= 90%"),
        ("Shape accuracy", f"{text['shape_accuracy']:.0%}", ">= 70%"),
        ("Inpaint: a green shape appears in the mask", f"{inpaint['green_in_mask_rate']:.0%}", ""),
        ("Inpaint: masked pixels that turn green", f"{inpaint['masked_green_share']:.0%}", ""),
        ("Inpaint: pixels outside the mask that keep their colour", f"{inpaint['outside_kept_share']:.0%}", ""),
        ("ControlNet edge F1 (with / without)", _f1(control), "clearly above without"),
        (
            "Time per 64x64 picture, 20 steps",
            f"{speed['seconds_median']} s (median; {speed['torch_threads']} thread)",
            "< 0.5 s",
        ),
    ]
    table = "\n".join(f"| {name} | {value} | {target} |" for name, value, target in rows)
    return (
        f"{CARD_START}\n"
        f"Measured by `python -m studio.micro.evaluate` ({text['prompts']} prompts, {inpaint['cases']} inpaint "
        f"cases, {control['prompts']} ControlNet prompts; {figures['sampler']}, {figures['steps']} steps, CFG "
        f"{figures['guidance_scale']}, fixed seeds):\n\n"
        "| Measure | Result | Target |\n|---|---|---|\n"
        f"{table}\n\n```json\n{json.dumps(figures, indent=2)}\n```\n{CARD_END}"
    )


def _f1(control: dict[str, float]) -> str:
    return f"{control['edge_f1_with_controlnet']:.2f} / {control['edge_f1_without_controlnet']:.2f}"


def write_card(model: Path, figures: dict) -> None:
    card = model / "README.md"
    text = card.read_text()
    start, end = text.index(CARD_START), text.index(CARD_END) + len(CARD_END)
    card.write_text(text[:start] + card_section(figures) + text[end:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studio.micro.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MICRO_FOLDER, help="the micro model folder")
    parser.add_argument("--prompts", type=int, default=48, help="text-to-image prompts")
    parser.add_argument("--inpaints", type=int, default=16, help="inpainting cases")
    parser.add_argument("--controls", type=int, default=16, help="ControlNet prompts")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--write-card", action="store_true", help="write the figures into the model card")
    args = parser.parse_args(argv)
    figures = evaluate(args.model, args.prompts, args.inpaints, args.controls, args.threads)
    print(json.dumps(figures, indent=2))
    if args.write_card:
        write_card(args.model, figures)


if __name__ == "__main__":
    main()
