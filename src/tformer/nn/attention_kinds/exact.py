"""Exact softmax attention behind the kinds' interface: the reference every efficient kind is measured against.

Models use ``Attention`` with ``kind=None`` for exact attention (its reference and SDPA backends, and their
dense additive masks); this module gives the same computation a ``MaskSpec`` interface, for the tests and
the benchmarks that put exact attention side by side with the other kinds.
"""

from __future__ import annotations

import torch

from tformer.attention_params import ExactParams
from tformer.nn.attention import ATTN_IMPLS, fused_attention
from tformer.nn.attention_kinds.base import AttentionCost, AttentionKind, MaskSpec, masked_attention


class ExactAttention(AttentionKind):
    """softmax(q k^T * scale) v over every allowed key: materialised (``"reference"``) or fused (``"sdpa"``)."""

    name = "exact"

    def __init__(self, impl: str = "sdpa") -> None:
        super().__init__()
        if impl not in ATTN_IMPLS:
            raise ValueError(f"unknown attention backend {impl!r}; choose one of {', '.join(ATTN_IMPLS)}")
        self.impl = impl

    @classmethod
    def from_params(cls, params: ExactParams, **sizes: object) -> ExactAttention:
        """The kind with the SDPA backend (exact attention has no parameters)."""
        return cls()

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: MaskSpec | None = None,
        is_causal: bool = False,
        scale: float,
        dropout_p: float = 0.0,
        **_: object,
    ) -> torch.Tensor:
        """q (B, H, T, D), k and v (B, Hkv, S, D) -> (B, H, T, D)."""
        spec = self.check(q, mask, is_causal)
        if self.impl == "sdpa" and spec.key_padding is None and spec.is_aligned():
            return fused_attention(q, k, v, None, is_causal, scale, dropout_p)  # no mask at all: fastest
        allowed = self.allowed(spec, q.shape[0], is_causal)
        if self.impl == "sdpa":
            out = fused_attention(q, k, v, allowed, False, scale, dropout_p)
            return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
        return masked_attention(q, k, v, allowed, scale, dropout_p)

    def allowed(self, spec: MaskSpec, batch: int, is_causal: bool) -> torch.Tensor:
        """(B, 1, T, S) bool: existing, non-padding keys, not after the query when causal."""
        ok = spec.key_ok(batch)[:, None, :]  # (B, 1, S)
        if is_causal:
            ok = ok & (spec.k_pos[None, :] <= spec.q_pos[:, None])[None]
        return ok.expand(batch, spec.q_pos.numel(), spec.k_pos.numel())[:, None]

    @classmethod
    def cost(cls, params: ExactParams, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """4 D FLOPs per (query, key) pair: T^2 pairs, T (T + 1) / 2 when causal; scores T x T."""
        pairs = seq_len * (seq_len + 1) // 2 if causal else seq_len * seq_len
        return AttentionCost(flops=4 * head_dim * pairs, score_elements=seq_len * seq_len)
