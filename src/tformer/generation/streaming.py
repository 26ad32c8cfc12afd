"""Streaming text: turn each step's new token into text as soon as it forms complete characters.

The tokenizers' ``DecodeStream`` does the incremental decoding: a byte-level BPE token can end in the
middle of a UTF-8 character (held back until the next token completes it), a WordPiece ``##`` piece
joins the word before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from tformer.generation.api import stream_generate
from tformer.generation.config import GenerationError
from tformer.generation.protocols import GenerativeLM
from tformer.tokenizers.stream import DecodeStream, SupportsDecode


class TextStreamer:
    """A ``generate(streamer=...)`` callback for one sequence: passes each new piece of text to ``write``.

    Example: ``model.generate(ids, streamer=TextStreamer(tok, lambda s: print(s, end="", flush=True)))``;
    call ``end()`` afterwards to emit any held-back text.
    """

    def __init__(
        self, tokenizer: SupportsDecode, write: Callable[[str], Any], skip_special_tokens: bool = True
    ) -> None:
        self.decoder = DecodeStream(tokenizer, skip_special_tokens)
        self.write = write

    def __call__(self, new_tokens: torch.Tensor) -> None:
        """Decode one step's token (a tensor of one element) and write what text it completes."""
        if new_tokens.numel() != 1:
            raise GenerationError("TextStreamer streams one sequence; generate with a batch of one prompt")
        piece = self.decoder.step(int(new_tokens.reshape(-1)[0]))
        if piece:
            self.write(piece)

    def end(self) -> None:
        """Write any held-back text."""
        piece = self.decoder.flush()
        if piece:
            self.write(piece)


def stream_text(
    model: GenerativeLM,
    tokenizer: SupportsDecode,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    skip_special_tokens: bool = True,
    **options: Any,
) -> Iterator[str]:
    """Yield the generated text of one prompt (1, T) piece by piece as tokens are produced."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise GenerationError(f"stream_text takes one prompt of shape (1, T), got {tuple(input_ids.shape)}")
    stream = stream_generate(model, input_ids, attention_mask, tokenizer=tokenizer, **options)
    decoder = DecodeStream(tokenizer, skip_special_tokens)
    for new in stream:
        piece = decoder.step(int(new[0]))
        if piece:
            yield piece
    tail = decoder.flush()
    if tail:
        yield tail
