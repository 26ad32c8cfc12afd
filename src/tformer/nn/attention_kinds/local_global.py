"""Longformer attention: a sliding window of w keys plus global tokens, in O(T w) memory.

A query at position i sees keys j with |i - j| <= w (bidirectional) or 0 <= i - j <= w (causal), every global
token, and a global token sees every key (only earlier ones when causal). Padding keys are never seen.

The window is computed in blocks of c = min(w, T) queries: block n's keys are blocks n-1, n (and n+1 when
bidirectional), a strided view of the padded keys (``unfold``, no copy), so the scores are (T, 3c) instead of
(T, T). Global keys are scored apart and joined in one softmax; global keys are removed from the window so no
key counts twice. Global queries attend densely over all keys: (G, T). With Longformer's separate global
projections, global queries use ``query_global`` and attend to ``key_global`` / ``value_global``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tformer.attention_params import LocalGlobalParams
from tformer.nn.attention import repeat_kv
from tformer.nn.attention_kinds.base import (
    AttentionCost,
    AttentionKind,
    MaskSpec,
    gather_rows,
    global_indices,
    softmax_probs,
)
from tformer.nn.positions import apply_rotary


class LocalGlobalAttention(AttentionKind):
    """Sliding-window + global-token attention (Longformer).

    Args:
        d_model, n_heads, n_kv_heads, head_dim: the attention layer's sizes.
        window: keys on each side (bidirectional) or behind (causal), >= 1.
        global_projections: separate q/k/v projections for global tokens (Longformer checkpoints have them).
        qkv_bias: bias on those projections.
    """

    name = "local_global"
    has_global_tokens = True

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        window: int,
        global_projections: bool = False,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"local_global window must be an integer >= 1, got {window!r}")
        self.window, self.n_heads, self.n_kv_heads, self.head_dim = window, n_heads, n_kv_heads, head_dim
        self.global_qkv = (
            nn.Linear(d_model, (n_heads + 2 * n_kv_heads) * head_dim, bias=qkv_bias)
            if global_projections
            else None
        )

    @classmethod
    def from_params(
        cls,
        params: LocalGlobalParams,
        *,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        qkv_bias: bool,
    ) -> LocalGlobalAttention:
        """The kind for a layer of these sizes (the global projections are as wide as the layer's)."""
        return cls(
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            window=params.window,
            global_projections=params.global_projections,
            qkv_bias=qkv_bias,
        )

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
        x: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: object = None,
    ) -> torch.Tensor:
        """q (B, H, T, D), k and v (B, Hkv, S, D) -> (B, H, T, D). ``x`` (B, T, d_model) feeds the global
        projections; ``rope`` (cos, sin) rotates their q and k as the layer's own."""
        spec = self.check(q, mask, is_causal)
        B, H, T, D = q.shape
        has_global_queries = spec.global_queries is not None and bool(spec.global_queries.any())
        if self.global_qkv is not None and has_global_queries and x is None:
            raise ValueError("local_global with global projections needs the layer input x for global tokens")
        if not spec.is_aligned():  # a few queries against a cache: the pattern as a mask over the cached keys
            if self.global_qkv is not None and has_global_queries:
                raise ValueError("global tokens with global projections are not supported with a KV cache")
            return self.dense(q, k, v, spec, is_causal, scale, dropout_p)
        k, v = repeat_kv(k, H // k.shape[1]), repeat_kv(v, H // v.shape[1])
        key_ok = spec.key_ok(B)
        out = self._windowed(q, k, v, key_ok, spec.global_keys, is_causal, scale, dropout_p)
        if has_global_queries:
            out = self._global_rows(
                out, q, k, v, key_ok, spec.global_queries, is_causal, scale, dropout_p, x, rope
            )
        return out

    def _windowed(self, q, k, v, key_ok, global_keys, causal: bool, scale: float, dropout_p: float):
        """Every query over its window and the global keys: scores (B, H, T/c, c, 2c or 3c) + (B, H, T, G)."""
        B, H, T, D = q.shape
        w = self.window
        c = min(w, T)  # block width: one block on each side covers the window
        nb = -(-T // c)
        Tp = nb * c
        before, after = c, 0 if causal else c
        L = before + c + after  # keys per query block
        qb = F.pad(q, (0, 0, 0, Tp - T)).view(B, H, nb, c, D)  # (B, H, nb, c, D)
        kb = F.pad(k, (0, 0, before, Tp - T + after)).unfold(2, L, c)  # (B, H, nb, D, L), a strided view
        vb = F.pad(v, (0, 0, before, Tp - T + after)).unfold(2, L, c).transpose(-1, -2)  # (B, H, nb, L, D)
        scores = (qb @ kb) * scale  # (B, H, nb, c, L)

        # query i of a block is at n*c + i, key slot s at n*c - before + s: distance i + before - s
        diff = torch.arange(c, device=q.device)[:, None] + before - torch.arange(L, device=q.device)[None]
        in_window = (diff >= 0) & (diff <= w) if causal else diff.abs() <= w  # (c, L)
        band_keys = key_ok if global_keys is None else key_ok & ~global_keys  # globals are scored apart
        band_keys = F.pad(band_keys, (before, Tp - T + after), value=False).unfold(1, L, c)  # (B, nb, L)
        allowed = in_window & band_keys[:, None, :, None, :]  # (B, 1, nb, c, L)

        G = 0
        if global_keys is not None:
            g_idx, g_valid = global_indices(global_keys)  # (B, G)
            g_valid = g_valid & key_ok.gather(1, g_idx)
            G = g_idx.shape[1]
            kg, vg = gather_rows(k, g_idx), gather_rows(v, g_idx)  # (B, H, G, D)
            g_scores = F.pad((q @ kg.transpose(-1, -2)) * scale, (0, 0, 0, Tp - T)).view(B, H, nb, c, G)
            g_allowed = g_valid[:, None, :].expand(B, Tp, G)  # (B, Tp, G)
            if causal:
                g_allowed = g_allowed & (
                    g_idx[:, None, :] <= torch.arange(Tp, device=q.device)[None, :, None]
                )
            scores = torch.cat([g_scores, scores], dim=-1)  # (B, H, nb, c, G + L)
            allowed = torch.cat([g_allowed.view(B, 1, nb, c, G), allowed], dim=-1)
        probs = softmax_probs(scores, allowed, dropout_p)
        out = probs[..., G:] @ vb  # (B, H, nb, c, D)
        if G:
            out = out + probs[..., :G] @ vg[:, :, None]
        return out.reshape(B, H, Tp, D)[:, :, :T]

    def _global_rows(self, out, q, k, v, key_ok, global_queries, causal, scale, dropout_p, x, rope):
        """Replace the rows of global queries by dense attention over every (earlier, if causal) key."""
        B, H, T, D = q.shape
        g_idx, g_valid = global_indices(global_queries)  # (B, G)
        if self.global_qkv is not None:
            q, k, v = self._global_qkv(x, g_idx, rope)
        else:
            q = gather_rows(q, g_idx)  # (B, H, G, D)
        scores = (q @ k.transpose(-1, -2)) * scale  # (B, H, G, T)
        allowed = key_ok[:, None, None, :] & g_valid[:, None, :, None]  # (B, 1, G, T)
        if causal:
            allowed = allowed & (
                torch.arange(T, device=q.device)[None, None, None] <= g_idx[:, None, :, None]
            )
        out_g = softmax_probs(scores, allowed, dropout_p) @ v  # (B, H, G, D)
        # padding entries of the index list keep the windowed result of the row they point at
        out_g = torch.where(g_valid[:, None, :, None], out_g, gather_rows(out, g_idx))
        return out.scatter(2, g_idx[:, None, :, None].expand(B, H, g_idx.shape[1], D), out_g)

    def _global_qkv(self, x: torch.Tensor, g_idx: torch.Tensor, rope):
        """Longformer's global projections: q for the global rows only, k and v for every token."""
        B, T, d = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        w, b = self.global_qkv.weight, self.global_qkv.bias
        wq, wkv = w.split([H * D, 2 * Hkv * D])
        bq, bkv = b.split([H * D, 2 * Hkv * D]) if b is not None else (None, None)
        x_g = x.gather(1, g_idx[..., None].expand(B, g_idx.shape[1], d))  # (B, G, d)
        q = F.linear(x_g, wq, bq).view(B, -1, H, D).transpose(1, 2)  # (B, H, G, D)
        k, v = (
            t.view(B, T, Hkv, D).transpose(1, 2) for t in F.linear(x, wkv, bkv).split(Hkv * D, dim=-1)
        )  # (B, Hkv, T, D) each
        if rope is not None:
            cos, sin = rope
            idx = g_idx[..., None].expand(B, g_idx.shape[1], cos.shape[-1])
            q, k = apply_rotary(q, cos.gather(1, idx), sin.gather(1, idx)), apply_rotary(k, cos, sin)
        return q, repeat_kv(k, H // Hkv), repeat_kv(v, H // Hkv)

    def allowed(self, spec: MaskSpec, batch: int, is_causal: bool) -> torch.Tensor:
        """(B, 1, T, S) bool: window, global keys and global queries, causality and padding."""
        diff = spec.q_pos[:, None] - spec.k_pos[None, :]  # (T, S)
        seen = (diff.abs() <= self.window)[None]  # (1, T, S)
        if spec.global_keys is not None:
            seen = seen | spec.global_keys[:, None, :]
        if spec.global_queries is not None:
            seen = seen | spec.global_queries[:, :, None]
        if is_causal:
            seen = seen & (diff >= 0)
        return (seen & spec.key_ok(batch)[:, None, :])[:, None]

    @classmethod
    def cost(cls, params: LocalGlobalParams, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """Blocks of c = min(w, T) queries each score 3c keys (2c causal): 4 D FLOPs per score (q.k and
        p*v), scores (T padded to a multiple of c) x 3c. Global tokens (per input) are not counted."""
        c = min(params.window, seq_len)
        padded = -(-seq_len // c) * c
        keys = (2 if causal else 3) * c
        return AttentionCost(flops=4 * head_dim * padded * keys, score_elements=padded * keys)
