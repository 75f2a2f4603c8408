"""Prompts encoded as A1111 encodes them: emphasis weights, prompts longer than CLIP's 75 tokens, ``BREAK``.

diffusers reads at most 75 tokens of a prompt (it cuts the rest, with a warning) and takes brackets as words. A1111
users write ``(masterpiece:1.2)`` and prompts of 150 tokens, and expect both to count. So when a prompt uses the
syntax (``studio/prompt_syntax.py``) or is too long, the studio encodes it itself, in the job (LoRAs on the text
encoders apply), and gives the pipeline the embeddings:
- the prompt's tokens are cut into chunks of 75 (at the last comma when one is among the chunk's last 20 tokens,
  so a phrase is not split; ``BREAK`` ends a chunk), each read by the text encoder between its start and end
  tokens, and the chunks' embeddings are put one after another (the UNet's cross-attention takes any length);
- each token's embedding is multiplied by its weight, then the chunk is scaled back to its mean before weighting,
  so emphasis changes the balance between words and not the loudness of the whole prompt;
- the prompt and the negative prompt (and every prompt of a Compare batch) are padded with empty chunks to the
  same length, as classifier-free guidance needs.
A prompt with neither is left to diffusers (or, with clip skip on SD 1.x/2.x, to ``studio/clip_skip.py``), so it
draws exactly what it drew before. SDXL's two text encoders are read alike, from the penultimate layer as SDXL
does, with the pooled embedding of the prompt's first chunk; its empty negative prompt stays zeros when the model
asks for that (``force_zeros_for_empty_prompt``), as in diffusers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DiffusionPipeline

from studio import clip_skip
from studio.errors import InvalidRequest
from studio.prompt_schedule import EditedPrompt, changes_over_steps
from studio.prompt_syntax import parse_prompt, plain_text

COMMA_BACKTRACK = 20
"""A full chunk is cut at its last comma when that comma is among its last this many tokens (A1111's default)."""


@dataclass(frozen=True)
class Token:
    id: int
    weight: float


Chunk = list[Token]


def weighted_tokens(pipe: DiffusionPipeline, tokenizer: Any, prompt: str) -> list[Token | None]:
    """``prompt``'s tokens with their weights, without start and end tokens; None where a ``BREAK`` is. Each
    piece is tokenized alone (as A1111 does), its textual inversion names expanded to their tokens."""
    tokens: list[Token | None] = []
    for piece in parse_prompt(prompt):
        if piece.is_break:
            tokens.append(None)
            continue
        text = pipe.maybe_convert_prompt(piece.text, tokenizer)
        tokens += [
            Token(int(i), piece.weight) for i in tokenizer(text, add_special_tokens=False, verbose=False).input_ids
        ]
    return tokens


def chunk_capacity(tokenizer: Any) -> int:
    """The prompt tokens one chunk holds: the tokenizer's length less the start and end tokens (75 for CLIP)."""
    return int(tokenizer.model_max_length) - 2


def comma_token(tokenizer: Any) -> int | None:
    """The comma's token, where chunks prefer to be cut (None when the tokenizer has no single one)."""
    ids = tokenizer(",", add_special_tokens=False).input_ids
    return int(ids[0]) if len(ids) == 1 else None


def into_chunks(tokens: Sequence[Token | None], capacity: int, comma: int | None) -> list[Chunk]:
    """``tokens`` in chunks of at most ``capacity``: a full chunk ends after its last comma if that is among its
    last ``COMMA_BACKTRACK`` tokens (the rest starts the next chunk), and a None (``BREAK``) ends one early."""
    chunks: list[Chunk] = []
    current: Chunk = []
    for token in tokens:
        if token is None:
            if current:
                chunks.append(current)
                current = []
            continue
        if len(current) == capacity:
            commas = [i for i, item in enumerate(current) if item.id == comma]
            cut = commas[-1] + 1 if commas and capacity - commas[-1] <= COMMA_BACKTRACK else capacity
            chunks.append(current[:cut])
            current = current[cut:]
        current.append(token)
    if current or not chunks:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class _Reader:
    """One text encoder and its tokenizer, read as the pipeline reads it."""

    tokenizer: Any
    encoder: torch.nn.Module
    penultimate: bool
    """SDXL's encoders: read from the penultimate layer without the final layer norm (else the last, normed)."""

    @property
    def capacity(self) -> int:
        return chunk_capacity(self.tokenizer)

    def read(self, chunk: Chunk, skipped: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One chunk's embeddings (weighted, back to their mean) and the encoder's pooled output if it has one."""
        tokenizer = self.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = [tokenizer.bos_token_id, *(t.id for t in chunk), tokenizer.eos_token_id]
        ids += [pad] * (self.capacity + 2 - len(ids))
        weights = [1.0, *(t.weight for t in chunk)] + [1.0] * (self.capacity + 1 - len(chunk))
        mask = None  # as diffusers: only a text encoder whose config asks for one gets the padding masked
        if getattr(self.encoder.config, "use_attention_mask", False):
            mask = torch.tensor([[1] * (len(chunk) + 2) + [0] * (self.capacity - len(chunk))], device=device)
        output = self.encoder(torch.tensor([ids], device=device), attention_mask=mask, output_hidden_states=True)
        if self.penultimate:
            hidden = output.hidden_states[-(skipped + 2)]
        else:
            norm = getattr(self.encoder, "text_model", self.encoder).final_layer_norm
            hidden = norm(output.hidden_states[-(skipped + 1)])
        pooled = output[0] if output[0].ndim == 2 else None
        if any(weight != 1.0 for weight in weights):
            hidden = reweighed(hidden, torch.tensor(weights, device=device, dtype=hidden.dtype))
        return hidden, pooled


NEAR_ZERO_MEAN = 1e-3
"""A mean this small beside the values' mean size is no level to restore (a model whose final layer norm has no
bias); the weights then apply as they are."""


def reweighed(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A chunk's embeddings (1, tokens, width) with each token's multiplied by its weight, then scaled back to the
    chunk's mean before weighting, as A1111 does."""
    before = hidden.float().mean()
    weighted = hidden * weights.reshape(1, -1, 1)
    after = weighted.float().mean()
    size = weighted.float().abs().mean()
    if before.abs() < NEAR_ZERO_MEAN * size or after.abs() < NEAR_ZERO_MEAN * size:
        return weighted
    return weighted * (before / after).to(hidden.dtype)


def _readers(pipe: DiffusionPipeline) -> list[_Reader]:
    if getattr(pipe, "text_encoder_2", None) is not None:
        return [_Reader(pipe.tokenizer, pipe.text_encoder, True), _Reader(pipe.tokenizer_2, pipe.text_encoder_2, True)]
    return [_Reader(pipe.tokenizer, pipe.text_encoder, False)]


def needs_own_encoding(pipe: DiffusionPipeline, texts: Sequence[str]) -> bool:
    """Whether any of ``texts`` uses emphasis or ``BREAK``, or is longer than the text encoder reads at once."""
    reader = _readers(pipe)[0]
    for text in texts:
        tokens = weighted_tokens(pipe, reader.tokenizer, text)
        if len(tokens) > reader.capacity or any(t is None or t.weight != 1.0 for t in tokens):
            return True
    return False


@torch.no_grad()
def encode_weighted(
    pipe: DiffusionPipeline, prompts: Sequence[str], negatives: Sequence[str | None], skipped: int
) -> dict[str, torch.Tensor]:
    """The pipeline's embedding arguments for ``prompts`` and their ``negatives`` (None: no negative prompt),
    ``skipped`` layers before the one the pipeline reads."""
    readers = _readers(pipe)
    texts = [*prompts, *(negative or "" for negative in negatives)]
    device = pipe._execution_device
    commas = [comma_token(reader.tokenizer) for reader in readers]
    chunked = [
        [
            into_chunks(weighted_tokens(pipe, reader.tokenizer, text), reader.capacity, comma)
            for reader, comma in zip(readers, commas, strict=True)
        ]
        for text in texts
    ]
    length = max(len(chunks) for per_reader in chunked for chunks in per_reader)
    embeddings: list[torch.Tensor] = []
    pooled: list[torch.Tensor | None] = []
    for per_reader in chunked:
        parts, first_pooled = [], None
        for reader, chunks in zip(readers, per_reader, strict=True):
            read = [reader.read(chunk, skipped, device) for chunk in [*chunks, *[[]] * (length - len(chunks))]]
            parts.append(torch.cat([hidden for hidden, _ in read], dim=1))
            first_pooled = read[0][1] if read[0][1] is not None else first_pooled
        embeddings.append(torch.cat(parts, dim=-1))
        pooled.append(first_pooled)
    dtype = readers[-1].encoder.dtype
    prompt_embeds = torch.cat(embeddings[: len(prompts)]).to(device=device, dtype=dtype)
    negative_embeds = torch.cat(embeddings[len(prompts) :]).to(device=device, dtype=dtype)
    if len(readers) == 1:
        return {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_embeds}
    prompt_pooled = torch.cat([p for p in pooled[: len(prompts)] if p is not None]).to(device=device, dtype=dtype)
    negative_pooled = torch.cat([p for p in pooled[len(prompts) :] if p is not None]).to(device=device, dtype=dtype)
    if getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        for index, negative in enumerate(negatives):
            if not negative:  # diffusers' SDXL: an empty negative prompt is zeros, not the encoded empty text
                negative_embeds[index].zero_()
                negative_pooled[index].zero_()
    return {
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative_embeds,
        "pooled_prompt_embeds": prompt_pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def _prompt_lists(arguments: Mapping[str, Any]) -> tuple[list[str], list[str | None]]:
    prompt = arguments["prompt"]
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    negative = arguments.get("negative_prompt")
    negatives = [negative] * len(prompts) if negative is None or isinstance(negative, str) else list(negative)
    return prompts, negatives


def _steps_run(arguments: Mapping[str, Any]) -> int:
    """The denoising steps a call runs, as its first step's prompt edits count them (image to image runs the
    last ``strength`` of them)."""
    steps = int(arguments.get("num_inference_steps") or 1)
    return max(1, int(steps * float(arguments.get("strength", 1.0))))


def _texts_at(edited: Sequence[EditedPrompt | None], step: int, steps: int) -> list[str | None]:
    return [prompt.text_at(step, steps) if prompt is not None else None for prompt in edited]


class PromptSwitch:
    """A1111's prompt editing during one pipeline call (``studio/prompt_schedule.py``): after each step, the
    embeddings of the texts the next step reads, when they differ from the ones in use. diffusers' step callback
    hands them back to the pipeline (with classifier-free guidance, the negative's first, as the pipeline holds
    them; SDXL's pooled embeddings as ``add_text_embeds``)."""

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        prompts, negatives = _prompt_lists(arguments)
        self.prompts = [EditedPrompt(text) for text in prompts]  # taken apart once, read after every step
        self.negatives = [EditedPrompt(text) if text else None for text in negatives]
        self.skipped = int(arguments.get("clip_skip") or 0)
        self.repeats = int(arguments.get("num_images_per_prompt") or 1)
        first = _steps_run(arguments)
        self.current = (_texts_at(self.prompts, 1, first), _texts_at(self.negatives, 1, first))

    def __call__(self, pipe: DiffusionPipeline, step: int) -> dict[str, torch.Tensor]:
        total = int(pipe.num_timesteps)
        if step + 2 > total:
            return {}
        texts = (_texts_at(self.prompts, step + 2, total), _texts_at(self.negatives, step + 2, total))
        if texts == self.current:
            return {}
        self.current = texts
        prompts = [text or "" for text in texts[0]]
        embeds = encode_weighted(pipe, prompts, texts[1], self.skipped)
        guided = bool(getattr(pipe, "do_classifier_free_guidance", True))

        def held(positive: str, negative: str) -> torch.Tensor:
            pair = [embeds[negative], embeds[positive]] if guided else [embeds[positive]]
            return torch.cat([tensor.repeat_interleave(self.repeats, dim=0) for tensor in pair])

        switched = {"prompt_embeds": held("prompt_embeds", "negative_prompt_embeds")}
        if "pooled_prompt_embeds" in embeds:
            switched["add_text_embeds"] = held("pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        return switched


StepCallback = Callable[[DiffusionPipeline, int, Any, dict[str, Any]], dict[str, Any]]
"""diffusers' ``callback_on_step_end``."""


def switching(callback: StepCallback, switch: PromptSwitch | None) -> StepCallback:
    """``callback``, then the prompt editing's next embeddings handed back to the pipeline."""
    if switch is None:
        return callback

    def on_step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        return {**callback(pipe, step, timestep, tensors), **switch(pipe, step)}

    return on_step_end


def _prompt_switch(arguments: Mapping[str, Any]) -> PromptSwitch | None:
    """The switch a call's prompts need, or None when none of them changes over the steps."""
    prompts, negatives = _prompt_lists(arguments)
    if not any(changes_over_steps(text) for text in [*prompts, *negatives] if text):
        return None
    return PromptSwitch(arguments)


def prompt_arguments(
    pipe: DiffusionPipeline, arguments: Mapping[str, Any]
) -> tuple[dict[str, Any], PromptSwitch | None]:
    """Pipeline ``arguments`` whose prompts are encoded as A1111 reads them, and the switch for their prompt
    editing (None without any): with prompt editing, the first step's texts and the switch for the later ones;
    with emphasis, ``BREAK`` or more than 75 tokens, as weighted chunks (here); with clip skip (diffusers' count,
    ``clip_skip``) on SD 1.x/2.x, read from that layer (``studio/clip_skip.py``); otherwise as they are, for
    diffusers."""
    skipped = int(arguments.get("clip_skip") or 0)
    layers = pipe.text_encoder.config.num_hidden_layers
    if skipped >= layers:
        raise InvalidRequest(
            f"clip skip {skipped + 1} reaches past this model's text encoder, which has {layers} layers: choose 1 to "
            f"{layers}"
        )
    prompt, negative = arguments["prompt"], arguments.get("negative_prompt")
    prompts, negatives = _prompt_lists(arguments)
    rest = {key: value for key, value in arguments.items() if key not in ("prompt", "negative_prompt", "clip_skip")}
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    with torch.no_grad():
        switch = _prompt_switch(arguments)
        if switch is not None:  # the first step's texts; the switch changes them as the steps go
            first = [text or "" for text in switch.current[0]]
            return {**rest, **encode_weighted(pipe, first, switch.current[1], skipped)}, switch
        if needs_own_encoding(pipe, [*prompts, *(n for n in negatives if n)]):
            return {**rest, **encode_weighted(pipe, prompts, negatives, skipped)}, None
        prompts = [plain_text(text) for text in prompts]  # "(red:1)" and "\\(" say their words only
        negatives = [plain_text(text) if text else text for text in negatives]
        if not skipped or sdxl:  # diffusers' own encoding (SDXL's takes clip_skip itself)
            return {
                **arguments,
                "prompt": prompts[0] if isinstance(prompt, str) else prompts,
                "negative_prompt": negatives[0] if negative is None or isinstance(negative, str) else negatives,
            }, None
        return {
            **rest,
            "prompt_embeds": clip_skip.encode(pipe, prompts, skipped),
            "negative_prompt_embeds": clip_skip.encode(pipe, [n or "" for n in negatives], skipped),
        }, None
