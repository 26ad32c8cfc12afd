"""Input embeddings: token vectors (optionally scaled), absolute positions, segments, norm, dropout."""

from __future__ import annotations

import torch
from torch import nn

from tformer.errors import InputError


class InputEmbedding(nn.Module):
    """x = Dropout(Norm(tok(ids) * scale + pos(position_ids) + segment(token_type_ids))).

    Any of ``positions``, ``token_types`` and ``norm`` may be None (RoPE/ALiBi/T5 models add no positions
    here). ``tok`` may be shared with another stack (encoder-decoder) or tied to the output head.
    """

    def __init__(
        self,
        tok: nn.Embedding,
        *,
        scale: float = 1.0,
        positions: nn.Module | None = None,
        token_types: nn.Embedding | None = None,
        norm: nn.Module | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.tok, self.scale, self.positions, self.token_types, self.norm = (
            tok,
            scale,
            positions,
            token_types,
            norm,
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def max_positions(self) -> int | None:
        """How many positions the absolute position table holds (None: no table, no limit here)."""
        if self.positions is None:
            return None
        if hasattr(self.positions, "table"):  # sinusoidal
            return int(self.positions.table.shape[0])
        return int(self.positions.num_embeddings - getattr(self.positions, "offset", 0))

    def check_inputs(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> None:
        """Raise a one-line InputError for ids or positions the lookups would fail on (a raw ``IndexError``,
        or a device-side assert on GPUs), before any indexing.

        One host sync for all the bounds; skipped while ``torch.compile`` traces (data-dependent checks
        would break the graph).
        """
        if input_ids.numel() == 0 or torch.compiler.is_compiling():
            return
        tables = [("token id", input_ids, self.tok.num_embeddings)]
        if self.max_positions is not None:
            tables.append(("position", position_ids, self.max_positions))
        if self.token_types is not None and token_type_ids is not None:
            tables.append(("token type id", token_type_ids, self.token_types.num_embeddings))
        bounds = torch.stack([b for _, ids, _ in tables for b in ids.aminmax()]).tolist()  # one sync
        for (what, ids, size), lo, hi in zip(tables, bounds[0::2], bounds[1::2]):
            if 0 <= lo and hi < size:
                continue
            bad = lo if lo < 0 else hi
            if what == "position":
                length = ids.shape[-1]
                detail = f"the input has {length} tokens, " if bad == length - 1 else f"position {bad} is "
                raise InputError(
                    f"{detail}longer than the model's context of {size} positions; shorten or truncate it"
                )
            kind = "vocabulary" if what == "token id" else "token types"
            raise InputError(
                f"{what} {bad} is outside the model's {kind} (ids 0..{size - 1}); "
                "was the input made by this model's tokenizer?"
            )

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids, position_ids, token_type_ids: (B, T) -> (B, T, d_model).

        Raises:
            InputError: an id outside the vocabulary (or token types), a position past the context.
        """
        self.check_inputs(input_ids, position_ids, token_type_ids)
        x = self.tok(input_ids)
        if self.scale != 1.0:
            x = x * self.scale
        if self.positions is not None:
            x = x + self.positions(position_ids).to(x.dtype)
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)
