"""The rows of a speculative batch: each row's tokens so far, its budget, and when it is finished.

Rows advance by different numbers of tokens per round, so each keeps its own count of generated tokens;
``history`` holds them in the output's layout (left-padded prompt in the first T columns, new tokens after
it, ``pad_token_id`` once finished) and ``layout`` says where they sit in the cache columns. Shapes: B rows,
T prompt width, H = T + max_new_tokens history width, K drafted tokens, V vocabulary.
"""

from __future__ import annotations

import torch

from tformer.generation.config import GenerationConfig
from tformer.generation.logits_processing import process_scores
from tformer.generation.row_layout import RowLayout
from tformer.generation.stopping import StopStrings


class Rows:
    """Per-row state of a speculative batch.

    Args:
        input_ids: (B, T) left-padded prompts. prompt_mask: (B, T) 1 for tokens, 0 for padding.
        config: the generation settings (budget, EOS, pad, processors).
        stop: stop-string checker, or None.
    """

    def __init__(
        self,
        input_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        config: GenerationConfig,
        stop: StopStrings | None = None,
    ) -> None:
        B, T = input_ids.shape
        self.config, self.stop, self.prompt_width = config, stop, T
        self.layout = RowLayout(prompt_mask, config.max_new_tokens)
        self.history = torch.zeros(B, self.layout.columns, dtype=torch.long, device=input_ids.device)
        self.history[:, :T] = input_ids
        self.history_start = self.layout.start.clone()  # (B,) first history column of each row
        self.generated = torch.zeros(B, dtype=torch.long, device=input_ids.device)
        self.active = torch.ones(B, dtype=torch.bool, device=input_ids.device)  # still generating
        ids = config.eos_ids
        self.eos = torch.tensor(ids, device=input_ids.device) if ids else None

    @property
    def remaining(self) -> torch.Tensor:
        """(B,) tokens each row may still add."""
        return self.config.max_new_tokens - self.generated

    def layout_tokens(self, first: int, stop: int) -> torch.Tensor:
        """(B, stop - first) the tokens at cache columns first .. stop - 1."""
        return self.layout.gather(self.history, self.history_start, first, stop)

    def row_tokens(self, i: int) -> list[int]:
        """Row i's prompt and generated tokens, without padding."""
        return self.history[
            i, int(self.history_start[i]) : self.prompt_width + int(self.generated[i])
        ].tolist()

    def with_drafts(self, drafts: torch.Tensor, filler: int) -> torch.Tensor:
        """(B, H + J): each row's tokens followed by its drafts (B, J); ``filler`` everywhere else."""
        B, H = self.history.shape
        cols = torch.arange(H + drafts.shape[1], device=drafts.device)
        used = self.prompt_width + self.generated  # (B,) history columns in use
        out = torch.full((B, H + drafts.shape[1]), filler, dtype=torch.long, device=drafts.device)
        keep = (cols[None, :H] >= self.history_start[:, None]) & (cols[None, :H] < used[:, None])
        out[:, :H] = torch.where(keep, self.history, filler)
        out.scatter_(1, used[:, None] + cols[None, : drafts.shape[1]], drafts)
        return out

    def process(self, logits: torch.Tensor, drafts: torch.Tensor, first: int) -> torch.Tensor:
        """Hugging Face's processed scores (B, M, V) of next-token ``logits`` (B, M, V).

        Position m follows each row's tokens and its first ``first + m`` ``drafts`` (B, J): the repetition
        penalty sees exactly that prefix, as it would in plain decoding.
        """
        B, M, V = logits.shape
        flat = logits.float().reshape(B * M, V)
        if self.config.repetition_penalty == 1.0:  # no processor reads the tokens
            return process_scores(flat, flat.new_empty(B * M, 0, dtype=torch.long), self.config).view(B, M, V)
        # ids >= V are ignored by the penalty: they mark "not part of this prefix"
        context = self.with_drafts(drafts, filler=V)  # (B, L)
        cols = torch.arange(context.shape[1], device=logits.device)
        limit = self.prompt_width + self.generated[:, None] + first + torch.arange(M, device=logits.device)
        context = context[:, None, :].masked_fill(cols[None, None, :] >= limit[..., None], V)  # (B, M, L)
        return process_scores(flat, context.reshape(B * M, -1), self.config).view(B, M, V)

    def append(self, tokens: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Add the first ``count[i]`` of ``tokens`` (B, K + 1) to each active row, stopping at the budget,
        an EOS id or a completed stop string (that token kept). Finished rows are padded to the end and
        become inactive. Returns the number of tokens each row gained (B,)."""
        cols = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
        count = torch.minimum(torch.where(self.active, count, 0), self.remaining)
        finished = torch.zeros_like(self.active)
        if self.eos is not None:
            hit = torch.isin(tokens, self.eos) & (cols < count[:, None])
            finished = hit.any(dim=1)
            count = torch.where(finished, hit.long().argmax(dim=1) + 1, count)
        rows, offsets = (cols < count[:, None]).nonzero(as_tuple=True)
        self.history[rows, self.prompt_width + self.generated[rows] + offsets] = tokens[rows, offsets]
        if self.stop is not None:
            for i in (count > 0).nonzero().flatten().tolist():
                tail = self.row_tokens(i)
                for j in range(int(count[i])):
                    if self.stop.hit(tail + tokens[i, : j + 1].tolist()):
                        count[i], finished[i] = j + 1, True
                        break
        self.generated += count
        finished |= self.active & (self.generated >= self.config.max_new_tokens)
        pad = self.config.pad_token_id
        for i in (finished & self.active).nonzero().flatten().tolist():
            if pad is not None:  # without one only the budget can finish a row: nothing left to pad
                self.history[i, self.prompt_width + int(self.generated[i]) :] = pad
        self.active &= ~finished
        return count

    def ready(self) -> int:
        """How many generated columns every row has filled (finished rows are padded to the end)."""
        if bool(self.active.any()):
            return int(self.generated[self.active].min())
        return int(self.generated.max())

    def sequences(self) -> torch.Tensor:
        """(B, T + steps): prompts and new tokens as plain generation returns them."""
        return self.history[:, : self.prompt_width + int(self.generated.max())]
