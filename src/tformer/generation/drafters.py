"""Where drafted tokens come from: a smaller model that shares the vocabulary, or the text itself.

A drafter proposes up to K tokens per row each round, with the distributions it sampled them from (or
None for fixed tokens), and learns afterwards how many were accepted so it can drop the rest. Shapes:
B rows, K drafted tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from tformer.generation.config import GenerationError
from tformer.generation.prompt_lookup import lookup_drafts
from tformer.generation.protocols import SpeculativeLM
from tformer.generation.speculative_rows import Rows


@dataclass
class Draft:
    """tokens (B, K); lengths (B,) real tokens per row (the rest is filler); probs (B, K, V) or None."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    probs: torch.Tensor | None = None

    @classmethod
    def empty(cls, batch_size: int, device: torch.device) -> Draft:
        """No drafted tokens: the round is one plain decoding step."""
        return cls(
            torch.zeros(batch_size, 0, dtype=torch.long, device=device),
            torch.zeros(batch_size, dtype=torch.long, device=device),
        )


class Drafter(Protocol):
    """Proposes tokens; told after each round how the rows moved."""

    def propose(self, rows: Rows, k: int, generator: torch.Generator | None) -> Draft:
        """Up to ``k`` tokens per row, continuing the tokens ``rows`` hold."""

    def advance(
        self, old_end: int, accepted: torch.Tensor, shift: torch.Tensor | None, active: torch.Tensor
    ) -> None:
        """The round ended at column ``old_end``; rows accepted (B,) drafts and moved by ``shift`` (B,),
        or None when no row moved."""


def model_logits(
    model: SpeculativeLM, rows: Rows, tokens: torch.Tensor, first: int, keep: int
) -> torch.Tensor:
    """Logits (B, keep, V) of the last ``keep`` of ``tokens`` (B, t) placed at cache columns first ..."""
    stop = first + tokens.shape[1]
    layout = rows.layout
    out = model(
        tokens,
        layout.mask(stop),
        layout.positions(first, stop),
        layout.slots(first, stop),
        logits_to_keep=keep,
    )
    if out.logits is None:
        raise GenerationError("the model returned no logits; generation needs a language-model head")
    return out.logits


class ModelDrafter:
    """A draft model run ahead of the target: K cheap steps, then one target pass checks them all.

    Its cache holds the columns before ``end``; each round it first catches up on the tokens after that
    (normally the last two: the token the target added and the one before it), then drafts.
    """

    def __init__(self, model: SpeculativeLM, do_sample: bool) -> None:
        self.model, self.do_sample = model, do_sample
        self.end = 0

    def propose(self, rows: Rows, k: int, generator: torch.Generator | None) -> Draft:
        """``k`` tokens per row from the draft model (argmax, or sampled from its processed scores)."""
        E = rows.layout.end
        B = rows.history.shape[0]
        drafts = torch.zeros(B, k, dtype=torch.long, device=rows.history.device)
        probs: list[torch.Tensor] = []
        logits = model_logits(self.model, rows, rows.layout_tokens(self.end, E), self.end, 1)
        for j in range(k):
            scores = rows.process(logits, drafts[:, :j], first=j)[:, 0]  # (B, V)
            if self.do_sample:
                probs.append(torch.softmax(scores, dim=-1))
                drafts[:, j] = torch.multinomial(probs[-1], 1, generator=generator).squeeze(1)
            else:
                drafts[:, j] = scores.argmax(dim=-1)
            if j + 1 < k:  # the last drafted token is never fed: the target checks it
                logits = model_logits(self.model, rows, drafts[:, j : j + 1], E + j, 1)
        self.end = E + k - 1
        lengths = torch.full((B,), k, dtype=torch.long, device=drafts.device)
        return Draft(drafts, lengths, torch.stack(probs, dim=1) if probs else None)

    def advance(
        self, old_end: int, accepted: torch.Tensor, shift: torch.Tensor | None, active: torch.Tensor
    ) -> None:
        """Keep what the draft computed for accepted tokens; rows move as the target's do."""
        if not bool(active.any()):
            return
        # row i's cache is right up to old_end + accepted (its accepted drafts), and never past self.end
        kept = torch.clamp(old_end + accepted, max=self.end)
        if shift is not None:
            kept = kept + shift
        self.end = max(0, int(kept[active].min()))  # rows with more are recomputed: same tokens, same keys
        self.model.rewind_caches(self.end, shift)


class LookupDrafter:
    """Prompt lookup: drafts copied from where the last n-gram occurred before (no model, no cache)."""

    def __init__(self, max_ngram: int, eos: torch.Tensor | None) -> None:
        self.max_ngram, self.eos = max_ngram, eos

    def propose(self, rows: Rows, k: int, generator: torch.Generator | None) -> Draft:
        """Up to ``k`` tokens per row found in its own prompt and output; rows without a match get none."""
        tokens = rows.layout_tokens(0, rows.layout.end)
        drafts, lengths = lookup_drafts(tokens, rows.layout.start, k, self.max_ngram, self.eos)
        lengths = torch.where(rows.active, lengths, 0)  # finished rows' columns hold nothing to look up
        longest = int(lengths.max())
        return Draft(drafts[:, :longest], lengths)

    def advance(
        self, old_end: int, accepted: torch.Tensor, shift: torch.Tensor | None, active: torch.Tensor
    ) -> None:
        """Nothing to roll back."""
