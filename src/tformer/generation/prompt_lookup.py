"""Prompt lookup decoding: draft tokens copied from an earlier place where the text's last n-gram occurred.

Hugging Face's ``PromptLookupCandidateGenerator`` semantics, per row: for n = min(max_matching_ngram_size,
len - 1) down to 1, find the earliest earlier occurrence of the last n tokens (in the prompt or the text
generated so far) that is followed by at least one token; the draft is what followed it (at most
``num_tokens``), cut before its first EOS. No occurrence: no draft (the round is a plain step).

Shapes: B rows, E columns of right-aligned tokens (row i's tokens are ``tokens[i, start[i]:]``), N tokens.
"""

from __future__ import annotations

import torch


def lookup_drafts(
    tokens: torch.Tensor,
    start: torch.Tensor,
    num_tokens: int,
    max_ngram: int,
    eos: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draft tokens (B, num_tokens) and their lengths (B,) for rows of right-aligned ``tokens`` (B, E).

    Example: tokens [[5, 6, 7, 8, 5, 6]], start [0], num_tokens 3, max_ngram 2 -> the bigram (5, 6) occurred
    at column 0, so the draft is [7, 8, 5] with length 3.
    """
    B, E = tokens.shape
    begin = torch.zeros(B, dtype=torch.long, device=tokens.device)
    found = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    for n in range(min(max_ngram, E - 1), 0, -1):
        windows = tokens.unfold(1, n, 1)  # (B, E - n + 1, n): window j covers columns j .. j + n - 1
        match = (windows == tokens[:, None, E - n :]).all(dim=2)  # (B, E - n + 1)
        j = torch.arange(E - n + 1, device=tokens.device)[None, :]
        # inside the row, and followed by at least one token (the last n-gram itself is not)
        match &= (j >= start[:, None]) & (j + n < E)
        hit = match.any(dim=1) & ~found
        begin = torch.where(hit, match.long().argmax(dim=1) + n, begin)  # argmax: the earliest occurrence
        found |= hit
    index = begin[:, None] + torch.arange(num_tokens, device=tokens.device)[None, :]  # (B, N)
    real = (index < E) & found[:, None]
    drafts = tokens.gather(1, index.clamp(max=E - 1))
    if eos is not None:
        real &= ~(torch.isin(drafts, eos) & real).long().cummax(dim=1).values.bool()  # stop before an EOS
    return drafts, real.sum(dim=1)
