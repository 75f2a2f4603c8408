"""The token count beside a prompt box, as A1111 shows it: "84/150" is 84 tokens, read in two chunks of 75.

It tells a person when a prompt crosses into another chunk (``studio/prompt_encoding.py``), counting as the
encoding does: emphasis taken out, LoRA tags left out, an embedding's name as its vectors, and of a prompt that
changes over the steps its longest text. It counts with the
loaded model's tokenizer and loads no model for it (before the first generation there is no count). A job's
pipeline calls its tokenizer with settings that change the tokenizer's state, so the counts use a copy of their own,
taken again when the model or its vocabulary (new embeddings) changes, one count at a time.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from studio.loras import strip_loras
from studio.model_manager import ModelManager
from studio.prompt_encoding import chunk_capacity, comma_token, into_chunks, weighted_tokens
from studio.prompt_schedule import changes_over_steps, texts_by_step
from studio.validation import MAX_PROMPT_CHARS


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    capacity: int
    """The tokens the prompt's chunks hold: 75 for one chunk, 150 for two..."""

    def describe(self) -> str:
        return f"{self.tokens}/{self.capacity}"


def _texts(prompt: str) -> set[str]:
    """The texts a prompt reads over its steps (prompt editing: the longest one counts), for up to the most steps
    a request may ask for."""
    if not changes_over_steps(prompt):
        return {prompt}
    return {text for _, text in texts_by_step(prompt, MAX_SCHEDULED_STEPS)}


MAX_SCHEDULED_STEPS = 150


class TokenCounter:
    """Counts a prompt's tokens with the loaded model's tokenizer (a copy of it)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._copy: tuple[int, int, Any] | None = None  # (pipeline id, vocabulary size, tokenizer copy)

    def count(self, prompt: str) -> TokenCount | None:
        """``prompt``'s tokens and its chunks' room; None while no model is loaded or for a prompt too long to be
        a request's."""
        return self.longest([prompt])

    def longest(self, prompts: Sequence[str]) -> TokenCount | None:
        """The count of the longest of ``prompts`` (Compare's lines; none is an empty prompt), those too long to be
        a request's left out; None while no model is loaded or when every one is too long."""
        model = self.manager.loaded
        kept = [p for p in prompts if isinstance(p, str) and len(p) <= MAX_PROMPT_CHARS] if prompts else [""]
        if model is None or not kept:
            return None
        pipe = model.pipeline
        with self._lock:
            tokenizer = self._tokenizer(pipe)
            if tokenizer is None:
                return None
            capacity, comma = chunk_capacity(tokenizer), comma_token(tokenizer)
            counts = []
            for text in {text for prompt in kept for text in _texts(strip_loras(prompt))}:
                tokens = weighted_tokens(pipe, tokenizer, text)
                chunks = into_chunks(tokens, capacity, comma)
                counts.append(TokenCount(sum(token is not None for token in tokens), capacity * len(chunks)))
        return max(counts, key=lambda count: (count.capacity, count.tokens))

    def _tokenizer(self, pipe: Any) -> Any:
        """The copy for ``pipe``'s tokenizer, taken again when the model or its vocabulary changed; None when the
        tokenizer is busy in a job at that moment (the next keystroke counts)."""
        try:
            size = len(pipe.tokenizer)
            if self._copy is None or self._copy[:2] != (id(pipe), size):
                self._copy = (id(pipe), size, copy.deepcopy(pipe.tokenizer))
        except RuntimeError:  # the tokenizers library's "Already borrowed", while a job tokenizes
            return None
        return self._copy[2]
