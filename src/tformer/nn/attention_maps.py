"""Attention weights (maps) as a readable computation of their own, usable beside any attention backend.

The fused kernel (SDPA) never materialises softmax(q k^T * scale + mask), so a caller that wants the maps
gets them recomputed here from the very q and k the layer used (after RoPE, out of the KV cache) and the
same additive mask (causal, padding, sliding window, ALiBi / T5 bias), for the requested heads only. The
reference backend computes its weights with the same function, so both paths agree by construction.

Shapes: B batch, H query heads, Hkv key/value heads, h selected heads, T queries, S keys, D head_dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tformer.errors import ConfigError


class AttentionWeightsUnavailable(ConfigError):
    """Attention maps were requested from an attention kind that never forms them."""


def attention_probabilities(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float,
    heads: Sequence[int] | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) for the selected query heads: (B, H|h, T, S), in q's dtype.

    Args:
        q: (B, H, T, D) queries. k: (B, Hkv, S, D) keys; query head i reads key head i // (H / Hkv).
        mask: additive, broadcastable to (B, H, T, S), or None.
        is_causal: apply a causal mask (aligned to the last key) when ``mask`` is None.
        scale: multiplier of q k^T.
        heads: query heads to compute, in this order (None: all). Only their scores are formed, so a
            selection bounds the memory to (B, h, T, S).
    """
    n_rep = q.shape[1] // k.shape[1]
    if heads is not None:
        idx = torch.as_tensor(list(heads), dtype=torch.long, device=q.device)
        q, k = q.index_select(1, idx), k.index_select(1, idx // n_rep)
        if mask is not None and mask.dim() == 4 and mask.shape[1] > 1:  # a per-head bias
            mask = mask.index_select(1, idx)
    elif n_rep > 1:
        # GQA/MQA: each key head serves n_rep consecutive query heads; (B, Hkv, S, D) -> (B, H, S, D)
        B, Hkv, S, D = k.shape
        k = k[:, :, None].expand(B, Hkv, n_rep, S, D).reshape(B, Hkv * n_rep, S, D)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H|h, T, S)
    if is_causal and mask is None:
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(S - T + 1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores.float(), dim=-1).to(q.dtype)


@dataclass(frozen=True)
class MapSelection:
    """Which layers and heads of one stack to return maps for (None: all), validated against the stack.

    Example: ``MapSelection.resolve([0, -1], [2], n_layers=4, n_heads=8, where="decoder")`` selects
    layers (0, 3) and head (2,).
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...] | None

    @staticmethod
    def resolve(
        layers: Sequence[int] | None,
        heads: Sequence[int] | None,
        *,
        n_layers: int,
        n_heads: int,
        where: str = "model",
    ) -> MapSelection:
        """Check indices (negative ones count from the end) and return them normalised."""
        chosen = tuple(range(n_layers)) if layers is None else _indices(layers, n_layers, "layer", where)
        picked = None if heads is None else _indices(heads, n_heads, "head", where)
        return MapSelection(chosen, picked)


def _indices(values: Sequence[int], size: int, what: str, where: str) -> tuple[int, ...]:
    if isinstance(values, int):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not -size <= v < size:
            raise ConfigError(f"{what} {v!r} is out of range: the {where} has {size} {what}s (0..{size - 1})")
        out.append(v % size)
    if not out:
        raise ConfigError(f"no {what}s selected; give at least one {what} index (0..{size - 1})")
    return tuple(dict.fromkeys(out))  # in the given order, each once


def check_weights_available(attn: torch.nn.Module) -> None:
    """Raise a one-line error naming the attention kind when its layer cannot return maps.

    An attention module says so with ``weights_unavailable`` (None, or why not) and names itself with
    ``kind_name``; the exact ``Attention`` always has weights.
    """
    reason = getattr(attn, "weights_unavailable", None)
    if reason:
        kind = getattr(attn, "kind_name", type(attn).__name__)
        raise AttentionWeightsUnavailable(
            f"attention kind {kind!r} has no attention weights ({reason}); "
            "build the model with the exact attention to see maps"
        )
