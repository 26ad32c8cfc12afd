"""A Transformer layer: self-attention, optional cross-attention, feed-forward, each a residual sub-layer.

Pre-LN:  x = x + Dropout(Sublayer(Norm(x)))   (GPT-2, Llama, T5)
Post-LN: x = Norm(x + Dropout(Sublayer(x)))    (the 2017 paper, BERT, BART)

``TransformerBlock.forward`` is the reference for kernel backends: ``tformer.kernels.native_kernels(model)``
swaps in a subclass whose ``forward`` computes a whole one-token decoding step in one native call where it
can and defers to this one everywhere else (and swaps it back out); ``type(module)`` shows which runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tformer.nn.attention import Attention


class TransformerBlock(nn.Module):
    """One layer. Variants come from the components passed in, not from flags inside."""

    def __init__(
        self,
        attn: Attention,
        ffn: nn.Module,
        make_norm: Callable[[], nn.Module],
        *,
        placement: str = "pre",
        dropout: float = 0.0,
        cross_attn: Attention | None = None,
    ) -> None:
        super().__init__()
        if placement not in ("pre", "post"):
            raise ValueError(f"norm placement must be 'pre' or 'post', got {placement!r}")
        self.pre_norm = placement == "pre"
        self.attn_norm, self.attn = make_norm(), attn
        if cross_attn is not None:
            self.cross_attn_norm, self.cross_attn = make_norm(), cross_attn
        else:
            self.cross_attn_norm = self.cross_attn = None
        self.ffn_norm, self.ffn = make_norm(), ffn
        self.dropout = nn.Dropout(dropout)

    def _residual(
        self, x: torch.Tensor, norm: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(fn(norm(x)))
        return norm(x + self.dropout(fn(x)))

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        input_pos: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        weight_heads: tuple[int, ...] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """x (B, T, d_model) -> (B, T, d_model), plus (self, cross) attention weights of ``weight_heads``
        (default all heads) when asked."""
        weights: list[torch.Tensor | None] = [None, None]

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            out, weights[0] = self.attn(
                h,
                mask=mask,
                is_causal=is_causal,
                rope=rope,
                input_pos=input_pos,
                need_weights=need_weights,
                weight_heads=weight_heads,
            )
            return out

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            out, weights[1] = self.cross_attn(
                h, memory=memory, mask=memory_mask, need_weights=need_weights, weight_heads=weight_heads
            )
            return out

        x = self._residual(x, self.attn_norm, self_attention)
        if self.cross_attn is not None:
            x = self._residual(x, self.cross_attn_norm, cross_attention)
        x = self._residual(x, self.ffn_norm, self.ffn)
        return x, (weights[0], weights[1])
