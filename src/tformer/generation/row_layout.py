"""Where each row's tokens sit in the cache columns while rows advance by different amounts.

Speculative decoding accepts a different number of tokens per row each round, but a batch shares one set of
cache columns (``input_pos``). So rows are kept right-aligned: row i's ``len_i`` tokens fill columns
``[end - len_i, end)``, the columns before it are padding (attention mask 0, as left padding is in plain
generation), and position ids count from each row's first token. After a round the rows that accepted
fewer tokens than the longest one move right (their caches too, ``rewind_caches(end, shift)``), so a
sliding window still sees exactly the last W tokens of every row. Rows that finished stop moving; their
columns hold whatever was computed and are never read again.

Shapes: B rows, C cache columns (prompt width T + max_new_tokens), H history width (the same).
"""

from __future__ import annotations

import torch


class RowLayout:
    """Rows right-aligned at a shared end column.

    Args:
        prompt_mask: (B, T) 1 for tokens, 0 for left padding; every row has at least one token.
        max_new_tokens: tokens each row may add (sets C = T + max_new_tokens).
    """

    def __init__(self, prompt_mask: torch.Tensor, max_new_tokens: int) -> None:
        B, T = prompt_mask.shape
        self.columns = T + max_new_tokens
        self.end = T
        self.start = T - prompt_mask.long().sum(1)  # (B,) first column of each row's tokens
        self.padded = bool((self.start > 0).any())
        self._cols = torch.arange(self.columns, device=prompt_mask.device)

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) tokens of each row so far (meaningless for finished rows)."""
        return self.end - self.start

    def mask(self, stop: int) -> torch.Tensor | None:
        """(B, stop) attention mask of columns 0 .. stop - 1, or None when no row has padding."""
        if not self.padded:
            return None
        return (self._cols[None, :stop] >= self.start[:, None]).long()

    def positions(self, first: int, stop: int) -> torch.Tensor:
        """(B, stop - first) position ids of columns first .. stop - 1 (padding at 0, as Hugging Face)."""
        return (self._cols[None, first:stop] - self.start[:, None]).clamp(min=0)

    def slots(self, first: int, stop: int) -> torch.Tensor:
        """(stop - first,) the cache slots (``input_pos``) of these columns."""
        return self._cols[first:stop]

    def gather(
        self, history: torch.Tensor, history_start: torch.Tensor, first: int, stop: int
    ) -> torch.Tensor:
        """(B, stop - first) tokens at columns first .. stop - 1, read from each row's history.

        ``history`` (B, H) holds row i's tokens from column ``history_start[i]`` on; padding columns get
        whatever the history holds there (masked anyway).
        """
        index = history_start[:, None] + self._cols[None, first:stop] - self.start[:, None]
        return history.gather(1, index.clamp(0, history.shape[1] - 1))

    def advance(self, gained: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Rows gained (B,) tokens; right-align the ``active`` (B,) ones again. Returns each row's shift (B,).

        The new end is the longest active row; finished rows keep shift 0 and start 0 (an all-ones mask
        row, so they never make the whole batch padded).
        """
        new_len = self.lengths + gained
        new_end = int(new_len[active].max()) if bool(active.any()) else self.end
        new_start = torch.where(active, new_end - new_len, 0)
        shift = torch.where(active, new_start - self.start, 0)
        self.start, self.end = new_start, new_end
        self.padded = bool((new_start > 0).any())
        return shift
