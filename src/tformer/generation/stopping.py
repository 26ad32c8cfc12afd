"""When a sequence is done: it produced an EOS id, or its text now ends in a stop string.

A stop string counts, as in Hugging Face's ``StopStringCriteria``, when it appears in the decoded text
and overlaps the newest token (so it is caught the step it completes, and never re-triggered by text
further back). The token that completes it is kept; later positions are padded.
"""

from __future__ import annotations

import torch

from tformer.generation.config import GenerationError
from tformer.tokenizers.stream import SupportsDecode


def eos_hit(next_tokens: torch.Tensor, eos: torch.Tensor | None) -> torch.Tensor:
    """(B,) bool: the new token is one of the EOS ids."""
    if eos is None:
        return torch.zeros_like(next_tokens, dtype=torch.bool)
    return torch.isin(next_tokens, eos)


class StopStrings:
    """Checks the end of each sequence's text for any of ``strings``, with the tokenizer's ``decode``."""

    def __init__(self, strings: list[str], tokenizer: SupportsDecode | None) -> None:
        if tokenizer is None:
            raise GenerationError("stop_strings needs the tokenizer: pass tokenizer=... to generate")
        if any(not s for s in strings):
            raise GenerationError("stop_strings must be non-empty strings")
        self.strings, self.tokenizer = strings, tokenizer
        # a token decodes to at least one character (or part of one), so this many tokens cover any match
        self.window = max(len(s) for s in strings) + 4

    def hit(self, row: list[int]) -> bool:
        """Whether a stop string ends inside the last token of ``row`` (or spans into it)."""
        tail = row[-self.window :]
        before = self.tokenizer.decode(tail[:-1])
        text = self.tokenizer.decode(tail)
        for s in self.strings:
            # an occurrence must end after `before`, i.e. start at or after len(before) - len(s) + 1
            if s in text[max(0, len(before) - len(s) + 1) :]:
                return True
        return False

    def __call__(self, tokens: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(B,) bool for tokens (B, L): which active rows just completed a stop string."""
        done = torch.zeros(tokens.shape[0], dtype=torch.bool)
        tails = tokens[:, -self.window :]
        for i in active.nonzero().flatten().tolist():
            done[i] = self.hit(tails[i].tolist())
        return done.to(tokens.device)
