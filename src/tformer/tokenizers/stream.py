"""Incremental decoding for generation: feed ids one at a time, get back only new, complete text."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tformer.tokenizers.base import Tokenizer


class ByteDecodeStream:
    """Incremental decoding for tokenizers whose ids map to bytes on their own (byte-level BPE, characters).

    Bytes go through Python's incremental UTF-8 decoder, which holds back an incomplete character and turns
    invalid bytes into U+FFFD exactly as ``bytes.decode(errors="replace")`` on the whole sequence would; so
    the pieces joined (plus :meth:`flush`) always equal ``decode(ids)``, at O(1) cost per step.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def step(self, token_id: int) -> str:
        """Add one id; return the newly completed text ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        return self._decoder.decode(self.tokenizer._decode_bytes([int(token_id)], self.skip_special_tokens))

    def extend(self, ids: Iterable[int]) -> str:
        """Add several ids; return the text they complete."""
        return "".join(self.step(i) for i in ids)

    def flush(self) -> str:
        """Return what is held back (an incomplete character becomes U+FFFD) and start afresh."""
        return self._decoder.decode(b"", final=True)


class DecodeStream:
    """Incremental decoding for any tokenizer: ``step(id)`` returns the text that id adds.

    Used where an id's text depends on its neighbours (WordPiece glues ``##`` pieces). Each step
    re-decodes a short window (the ids since the last emitted text plus the ones before them), so the
    cost per step stays constant; text ending in U+FFFD is held back as a possibly incomplete character.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the window decoded for context
        self._read = 0  # ids before this are already emitted

    def step(self, token_id: int) -> str:
        """Add one id; return the newly completed text ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix : self._read], self.skip_special_tokens)
        after = decode(self.ids[self._prefix :], self.skip_special_tokens)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""

    def extend(self, ids: Iterable[int]) -> str:
        """Add several ids; return the text they complete."""
        return "".join(self.step(i) for i in ids)

    def flush(self) -> str:
        """Return whatever is held back (incomplete bytes become U+FFFD) and reset the window."""
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix : self._read], self.skip_special_tokens)
        after = decode(self.ids[self._prefix :], self.skip_special_tokens)
        self._prefix = self._read = len(self.ids)
        return after[len(before) :]
