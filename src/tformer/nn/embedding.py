"""Input embeddings: token vectors (optionally scaled), absolute positions, segments, norm, dropout."""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids, position_ids, token_type_ids: (B, T) -> (B, T, d_model)."""
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
