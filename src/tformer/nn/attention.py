"""Multi-head attention: self or cross, MHA / GQA / MQA, optional RoPE, additive bias masks, KV cache.

Two interchangeable backends compute softmax(Q K^T * scale + mask) V:
- ``"reference"``: readable matmul-softmax-matmul that can return the attention weights;
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels).
Shapes: B batch, T queries, S keys, H query heads, Hkv key/value heads, D head_dim.

Kernel backends subclass ``Attention`` and override ``attend`` (the fused path's math) for the calls they
compute, deferring to it for the rest: ``tformer.kernels.native_kernels(model)`` swaps such a subclass in
(and back out), so ``type(module)`` shows which path runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from tformer.nn.attention_maps import attention_probabilities
from tformer.nn.kv_cache import KVCache, StaticKV
from tformer.nn.positions import apply_rotary

if TYPE_CHECKING:  # the kinds import this module; at run time Attention only calls them
    from tformer.nn.attention_kinds.base import MaskSpec

ATTN_IMPLS = ("sdpa", "reference")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, Hkv * n_rep, S, D), each key/value head shared by n_rep query heads."""
    if n_rep == 1:
        return x
    B, Hkv, S, D = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, S, D).reshape(B, Hkv * n_rep, S, D)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + mask) v, spelled out. Returns (output (B, H, T, D), weights (B, H, T, S)).

    ``is_causal`` applies only when ``mask`` is None (a given mask already encodes causality), as in the
    fused path.
    """
    weights = attention_probabilities(q, k, mask, is_causal, scale)  # (B, H, T, S)
    v = repeat_kv(v, q.shape[1] // k.shape[1])
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The same computation through PyTorch's fused scaled_dot_product_attention."""
    n_rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        dropout_p=dropout_p,
        is_causal=is_causal and mask is None,
        scale=scale,
        enable_gqa=n_rep > 1,
    )


class Attention(nn.Module):
    """Scaled dot-product attention with learned projections.

    Self-attention projects q, k, v from the input with one fused matrix; cross-attention (``cross=True``)
    projects q from the input and k, v from ``memory`` (the encoder output).

    Args:
        d_model: model width. n_heads: query heads. n_kv_heads: key/value heads (divides n_heads).
        head_dim: width of each head. qkv_bias / out_bias: biases on the projections.
        scale: multiplier of q k^T (1/sqrt(head_dim) in the paper; T5 folds it into the weights: 1.0).
        dropout: on the attention probabilities. cross: cross-attention.
        kind: an efficient attention kind (``tformer.nn.attention_kinds``) computing softmax attention
            from q, k, v its own way, with a ``MaskSpec`` instead of a dense mask; None: exact attention.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool = True,
        out_bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
        cross: bool = False,
        kind: nn.Module | None = None,
    ):
        super().__init__()
        if cross and kind is not None:
            raise ValueError("cross-attention is exact; attention kinds apply to self-attention only")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.scale = scale if scale is not None else head_dim**-0.5
        self.dropout, self.cross = dropout, cross
        q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
        if cross:
            self.q_proj = nn.Linear(d_model, q_dim, bias=qkv_bias)
            self.kv_proj = nn.Linear(d_model, 2 * kv_dim, bias=qkv_bias)
        else:
            self.qkv_proj = nn.Linear(d_model, q_dim + 2 * kv_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(q_dim, d_model, bias=out_bias)
        self.impl = "sdpa"
        self.cache: KVCache | StaticKV | None = None
        self.kind = kind

    @property
    def kind_name(self) -> str:
        """The attention kind's name: ``"exact"`` for this module's own softmax attention."""
        return "exact" if self.kind is None else self.kind.name

    @property
    def weights_unavailable(self) -> str | None:
        """Why this layer cannot return attention maps (tformer.nn.attention_maps), or None: it can."""
        if self.kind is None:
            return None
        return "it computes attention without materialising the probabilities"

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # (B, T, n*D) -> (B, n, T, D)

    def _project(self, x: torch.Tensor, memory: torch.Tensor | None, rope, input_pos):
        kv_dim = self.n_kv_heads * self.head_dim
        if self.cross:
            q = self._heads(self.q_proj(x), self.n_heads)
            if isinstance(self.cache, StaticKV) and self.cache.k is not None:
                return q, self.cache.k, self.cache.v
            if memory is None:
                raise ValueError("cross-attention needs the encoder output (memory)")
            k, v = (self._heads(t, self.n_kv_heads) for t in self.kv_proj(memory).split(kv_dim, dim=-1))
            if isinstance(self.cache, StaticKV):
                self.cache.k, self.cache.v = k, v
            return q, k, v
        q, k, v = self.qkv_proj(x).split([self.n_heads * self.head_dim, kv_dim, kv_dim], dim=-1)
        q, k, v = (
            self._heads(q, self.n_heads),
            self._heads(k, self.n_kv_heads),
            self._heads(v, self.n_kv_heads),
        )
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if self.cache is not None:
            k, v = self.cache.update(input_pos, k, v)
        return q, k, v

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        dropout_p: float,
    ) -> torch.Tensor:
        """The fused backend's softmax(q k^T * scale + mask) v: q (B, H, T, D), k/v (B, Hkv, S, D) ->
        (B, H, T, D). The extension point of kernel backends (see the module docstring)."""
        return fused_attention(q, k, v, mask, is_causal, self.scale, dropout_p)

    def forward(
        self,
        x: torch.Tensor,
        *,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | MaskSpec | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        input_pos: torch.Tensor | None = None,
        need_weights: bool = False,
        weight_heads: tuple[int, ...] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from x (B, T, d_model); returns (output (B, T, d_model), weights (B, H|h, T, S) or None).

        ``mask`` is additive and broadcastable to (B, H, T, S); ``is_causal`` applies a causal mask when
        ``mask`` is None. ``rope`` is (cos, sin), each (B, T, D). ``input_pos`` (T,) are the cache slots.
        ``need_weights`` returns the attention probabilities of the heads in ``weight_heads`` (default all)
        without changing the backend: under SDPA they are recomputed from the same q, k and mask.
        With an attention ``kind``, ``mask`` is a ``MaskSpec`` (or None) and no weights exist.
        """
        B, T, _ = x.shape
        q, k, v = self._project(x, memory, rope, input_pos)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if self.kind is not None:
            if need_weights:
                raise ValueError(f"attention_kind={self.kind.name!r} never materialises attention weights")
            out = self.kind(
                q,
                k,
                v,
                mask=mask,
                is_causal=is_causal,
                scale=self.scale,
                dropout_p=dropout_p,
                x=x,
                rope=rope,
                cache=self.cache,
            )
        elif self.impl == "reference":
            out, weights = reference_attention(q, k, v, mask, is_causal, self.scale, dropout_p)
            if need_weights and weight_heads is not None:
                weights = weights[:, list(weight_heads)]
        else:
            if need_weights:  # before dropout, as the reference path returns them
                weights = attention_probabilities(q, k, mask, is_causal, self.scale, weight_heads)
            out = self.attend(q, k, v, mask, is_causal, dropout_p)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, H, T, D) -> (B, T, H*D)
        return self.o_proj(out), weights if need_weights else None
