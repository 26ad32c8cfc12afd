"""Attention kinds: exact softmax attention and efficient approximations or sparsifications of it.

Each kind is a small module computing (B, H, T, D) outputs from q, k, v and a ``MaskSpec``, usable alone or
inside ``tformer.nn.Attention(kind=...)``. ``KINDS`` is the one registry from name to class; its names are
those of ``tformer.attention_params.ATTENTION_PARAMS`` (which the config validates with).

- ``exact``: softmax(q k^T) v over every allowed key; O(T^2).
- ``local_global``: Longformer's sliding window + global tokens; O(T w).
- ``block_sparse``: BigBird's window, global and random blocks; O(T) blocks.
- ``performer``: FAVOR+ positive orthogonal random features; O(T m), causal with a constant-size state.
- ``linformer``: keys and values projected along the sequence to k rows; O(T k), bidirectional only.

Relative positions: RoPE works with every kind (it rotates q and k before them); additive biases (ALiBi,
T5 buckets) are defined only where scores are materialised, so the config allows them with ``exact`` only.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tformer.attention_params import parse_attention_params
from tformer.nn.attention_kinds.base import AttentionCost, AttentionKind, MaskSpec, masked_attention
from tformer.nn.attention_kinds.block_sparse import BlockSparseAttention, block_layout
from tformer.nn.attention_kinds.exact import ExactAttention
from tformer.nn.attention_kinds.linformer import LinformerAttention
from tformer.nn.attention_kinds.local_global import LocalGlobalAttention
from tformer.nn.attention_kinds.performer import PerformerAttention, PerformerState

KINDS: dict[str, type[AttentionKind]] = {
    "exact": ExactAttention,
    "local_global": LocalGlobalAttention,
    "block_sparse": BlockSparseAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
}


def make_attention_kind(
    name: str,
    params: dict[str, Any] | None,
    *,
    d_model: int,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    qkv_bias: bool = True,
) -> nn.Module | None:
    """The kind module of an ``Attention`` layer from its name and parameters; None for ``exact``, which
    ``Attention``'s own backends compute. Raises ConfigError for an unknown kind or bad parameters."""
    typed = parse_attention_params(name, params)
    if name == "exact":
        return None
    return KINDS[name].from_params(
        typed, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim, qkv_bias=qkv_bias
    )


def attention_cost(
    name: str, params: dict[str, Any] | None, seq_len: int, head_dim: int, causal: bool
) -> AttentionCost:
    """Forward FLOPs and score elements per head of one self-attention layer over ``seq_len`` tokens."""
    return KINDS[name].cost(parse_attention_params(name, params), seq_len, head_dim, causal)


__all__ = [
    "KINDS",
    "AttentionCost",
    "AttentionKind",
    "BlockSparseAttention",
    "ExactAttention",
    "LinformerAttention",
    "LocalGlobalAttention",
    "MaskSpec",
    "PerformerAttention",
    "PerformerState",
    "attention_cost",
    "block_layout",
    "make_attention_kind",
    "masked_attention",
]
