"""Streaming text: turn each step's new token into text as soon as it forms complete characters.

A byte-level BPE token can end in the middle of a UTF-8 character; the incremental decoder holds such
a tail back (it decodes to U+FFFD) until the next token completes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from tformer.generation.api import stream_generate
from tformer.generation.config import GenerationError


class IncrementalDecoder:
    """Feed ids one at a time; get back only the newly completed text (fallback for tokenizers without
    ``decode_stream``): decode the ids since the last emitted text and emit what grew, unless it ends
    in an incomplete character."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer, self.skip = tokenizer, skip_special_tokens
        self.ids: list[int] = []
        self.emitted = ""

    def _text(self) -> str:
        try:
            return self.tokenizer.decode(self.ids, skip_special_tokens=self.skip)
        except TypeError:  # a decode without the keyword
            return self.tokenizer.decode(self.ids)

    def step(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self._text()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        new, self.emitted = text[len(self.emitted) :], text
        return new

    def flush(self) -> str:
        text = self._text()
        new = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        self.emitted = text
        return new


def incremental_decoder(tokenizer: Any, skip_special_tokens: bool = True):
    """The tokenizer's own ``decode_stream`` when it has one, else ``IncrementalDecoder``."""
    if hasattr(tokenizer, "decode_stream"):
        return tokenizer.decode_stream(skip_special_tokens=skip_special_tokens)
    return IncrementalDecoder(tokenizer, skip_special_tokens)


class TextStreamer:
    """A ``generate(streamer=...)`` callback for one sequence: passes each new piece of text to ``write``.

    Example: ``model.generate(ids, streamer=TextStreamer(tok, lambda s: print(s, end="", flush=True)))``;
    call ``end()`` afterwards to emit any held-back text.
    """

    def __init__(self, tokenizer: Any, write: Callable[[str], Any], skip_special_tokens: bool = True) -> None:
        self.decoder = incremental_decoder(tokenizer, skip_special_tokens)
        self.write = write

    def __call__(self, new_tokens: torch.Tensor) -> None:
        if new_tokens.numel() != 1:
            raise GenerationError("TextStreamer streams one sequence; generate with a batch of one prompt")
        piece = self.decoder.step(int(new_tokens.reshape(-1)[0]))
        if piece:
            self.write(piece)

    def end(self) -> None:
        piece = self.decoder.flush()
        if piece:
            self.write(piece)


def stream_text(
    model,
    tokenizer: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    skip_special_tokens: bool = True,
    **options: Any,
) -> Iterator[str]:
    """Yield the generated text of one prompt (1, T) piece by piece as tokens are produced."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise GenerationError(f"stream_text takes one prompt of shape (1, T), got {tuple(input_ids.shape)}")
    stream = stream_generate(model, input_ids, attention_mask, tokenizer=tokenizer, **options)
    decoder = incremental_decoder(tokenizer, skip_special_tokens)
    for new in stream:
        piece = decoder.step(int(new[0]))
        if piece:
            yield piece
    tail = decoder.flush()
    if tail:
        yield tail
