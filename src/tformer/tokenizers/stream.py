"""Incremental decoding for generation: feed ids one at a time, get back only new, complete text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class SupportsDecode(Protocol):
    """A tokenizer as far as streaming needs it: tformer's, or Hugging Face's (``decode(ids, ...)``)."""

    def decode(self, ids: Sequence[int], /, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``."""


class DecodeStream:
    """Incremental decoding for any tokenizer: ``step(id)`` returns the text that id completes.

    Each step decodes a short window: the ids of the last emitted piece (context) and those after them, and
    emits what the newest ids add to the text of the context. The context is what makes it right for
    every tokenizer: WordPiece glues a ``##`` piece to the word before it (and puts a space before any
    other), and byte-level BPE can split a multi-byte UTF-8 character across ids; text ending in U+FFFD
    (an incomplete character) is held back until an id completes it. Pieces are emitted only where the
    text so far decodes completely, so the pieces joined (plus :meth:`flush`) equal ``decode(ids)``, and
    the cost per step stays constant.

    Example (byte-level BPE, "é" = bytes c3 a9 in two ids): step(id_c3) -> "", step(id_a9) -> "é".
    """

    def __init__(self, tokenizer: SupportsDecode, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the window decoded for context
        self._read = 0  # ids before this are already emitted
        self._keyword = True  # the tokenizer's decode takes skip_special_tokens

    def _decode(self, ids: list[int]) -> str:
        if self._keyword:
            try:
                return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)
            except TypeError:  # a decode without the keyword (tiktoken's, for one)
                self._keyword = False
        return self.tokenizer.decode(ids)

    def _window(self) -> tuple[str, str]:
        """Text of the context ids, and of the context plus the ids not yet emitted."""
        return self._decode(self.ids[self._prefix : self._read]), self._decode(self.ids[self._prefix :])

    def step(self, token_id: int) -> str:
        """Add one id; return the newly completed text ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        before, after = self._window()
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""

    def extend(self, ids: Iterable[int]) -> str:
        """Add several ids; return the text they complete."""
        return "".join(self.step(i) for i in ids)

    def flush(self) -> str:
        """Return whatever is held back (an incomplete character becomes U+FFFD) and start a new window."""
        before, after = self._window()
        self._prefix = self._read = len(self.ids)
        return after[len(before) :]
