"""Linformer attention: keys and values projected along the sequence to k rows, O(T k).

softmax(Q (E K)^T * scale) (F V) with learned E, F of shape (k, max_seq_len): every query scores k mixtures
of keys instead of T keys. A sequence of S < max_seq_len tokens uses the first S columns (the same as padding
it with zero keys and values to max_seq_len). Padding keys and values are zeroed before the projection, so
a padded row computes what the unpadded sequence does; after the projection no single key can be masked.

Bidirectional only: each projected row mixes every position, future ones included.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tformer.attention_params import LinformerParams
from tformer.nn.attention import repeat_kv
from tformer.nn.attention_kinds.base import AttentionCost, AttentionKind, MaskSpec, softmax_probs


class LinformerAttention(AttentionKind):
    """Attention over k learned projections of the keys and values along the sequence.

    Args:
        k: projected length, >= 1. max_seq_len: the longest sequence (columns of E and F).
        share_kv: one projection for keys and values.
    """

    name = "linformer"
    supports_causal = False

    def __init__(self, k: int, max_seq_len: int, *, share_kv: bool = False) -> None:
        super().__init__()
        for field, value in (("k", k), ("max_seq_len", max_seq_len)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"linformer {field} must be an integer >= 1, got {value!r}")
        self.k, self.max_seq_len = k, max_seq_len
        # N(0, 1/k) as in the paper: a projected key keeps the scale of one key
        self.proj_k = nn.Parameter(torch.randn(k, max_seq_len) / math.sqrt(k))
        self.proj_v = None if share_kv else nn.Parameter(torch.randn(k, max_seq_len) / math.sqrt(k))

    @classmethod
    def from_params(cls, params: LinformerParams, **sizes: object) -> LinformerAttention:
        """The kind from its typed parameters; ``max_seq_len`` must be set (the projections' width)."""
        if params.max_seq_len is None:
            raise ValueError("linformer needs max_seq_len (the longest sequence its projections cover)")
        return cls(params.k, params.max_seq_len, share_kv=params.share_kv)

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
        H = q.shape[1]
        if int(spec.k_pos.max()) >= self.max_seq_len:
            raise ValueError(
                f"a sequence of {int(spec.k_pos.max()) + 1} tokens is longer than this Linformer's "
                f"max_seq_len={self.max_seq_len}; shorten the input or build with a larger max_seq_len"
            )
        ok = spec.key_ok(q.shape[0])[:, None, :, None]  # (B, 1, S, 1)
        k, v = k.masked_fill(~ok, 0.0), v.masked_fill(~ok, 0.0)
        cols = spec.k_pos.clamp(min=0)  # the projection columns of these key positions
        e = self.proj_k[:, cols].to(k.dtype)  # (k, S)
        f = (self.proj_v if self.proj_v is not None else self.proj_k)[:, cols].to(v.dtype)
        k_proj = repeat_kv(torch.einsum("ks,bhsd->bhkd", e, k), H // k.shape[1])  # (B, H, k, D)
        v_proj = repeat_kv(torch.einsum("ks,bhsd->bhkd", f, v), H // v.shape[1])
        scores = (q @ k_proj.transpose(-1, -2)) * scale  # (B, H, T, k)
        return softmax_probs(scores, None, dropout_p) @ v_proj

    @classmethod
    def cost(cls, params: LinformerParams, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """Projections E K and F V 2 x 2kTD, scores and their use 2 x 2TkD: 8TkD FLOPs; scores (T, k)."""
        return AttentionCost(flops=8 * seq_len * params.k * head_dim, score_elements=seq_len * params.k)
