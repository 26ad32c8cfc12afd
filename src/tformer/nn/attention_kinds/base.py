"""What every attention kind shares: the mask *description* it reads, its interface and a dense fallback.

An efficient kind never receives a (B, H, T, S) additive mask, which would cost the O(T^2) memory it exists
to avoid; it receives a ``MaskSpec``: the positions of queries and keys, which keys are padding and which
tokens are global, from which it derives only the entries it computes.
Shapes: B batch, H query heads, Hkv key/value heads, T queries, S keys, D head_dim, G global tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from tformer.nn.attention import reference_attention, repeat_kv


@dataclass
class MaskSpec:
    """Which keys each query may see, described instead of materialised.

    q_pos: (T,) absolute positions of the queries. k_pos: (S,) of the keys (-1: an empty cache slot).
    key_padding: (B, S) bool, False for padding keys; None: no padding.
    global_keys / global_queries: (B, S) / (B, T) bool, True for global tokens; None: none.
    """

    q_pos: torch.Tensor
    k_pos: torch.Tensor
    key_padding: torch.Tensor | None = None
    global_keys: torch.Tensor | None = None
    global_queries: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        q_pos: torch.Tensor,
        k_pos: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
    ) -> MaskSpec:
        """From (B, L) 1/0 masks over every position so far (L > max position), as a model's forward takes."""
        for name, m in (("attention_mask", attention_mask), ("global_attention_mask", global_attention_mask)):
            if m is not None and (m.dim() != 2 or m.shape[1] <= int(max(q_pos.max(), k_pos.max()))):
                raise ValueError(
                    f"{name} of shape {tuple(m.shape)} must be (batch, length) covering every position so far"
                )
        padding = None
        if attention_mask is not None and not bool(attention_mask.all()):
            padding = attention_mask.bool()[:, k_pos.clamp(min=0)]
        g_keys = g_queries = None
        if global_attention_mask is not None and bool(global_attention_mask.any()):
            g = global_attention_mask.bool()
            if attention_mask is not None:
                g = g & attention_mask.bool()  # a padding token is never global (as in Longformer)
            g_keys, g_queries = g[:, k_pos.clamp(min=0)] & (k_pos >= 0), g[:, q_pos]
        return cls(q_pos, k_pos, padding, g_keys, g_queries)

    @classmethod
    def aligned(cls, T: int, device: torch.device | None = None) -> MaskSpec:
        """Queries and keys at positions 0..T-1, nothing padded, no global tokens."""
        pos = torch.arange(T, device=device)
        return cls(pos, pos)

    def is_aligned(self) -> bool:
        """Whether queries and keys are the same positions 0..T-1 (no cache): blocked computation applies."""
        T = self.q_pos.numel()
        return (
            self.k_pos.numel() == T
            and bool((self.q_pos == self.k_pos).all())
            and int(self.q_pos[0]) == 0
            and int(self.q_pos[-1]) == T - 1
        )

    @property
    def has_globals(self) -> bool:
        """Whether any key or query is a global token."""
        return self.global_keys is not None or self.global_queries is not None

    def key_ok(self, batch: int) -> torch.Tensor:
        """(B, S) bool: keys that exist and are not padding."""
        ok = (self.k_pos >= 0)[None].expand(batch, -1)
        return ok & self.key_padding if self.key_padding is not None else ok


@dataclass(frozen=True)
class AttentionCost:
    """Forward cost of one self-attention layer over one sequence of T tokens.

    flops: multiply-adds x 2 of the score and value products (and feature maps / projections where a kind
    has them). score_elements: the largest score-like tensor held at once, per head (its bytes are
    batch x heads x score_elements x dtype bytes).
    """

    flops: int
    score_elements: int


class AttentionKind(nn.Module):
    """Base of the efficient kinds: ``forward(q, k, v, ...) -> (B, H, T, D)``, softmax attention by other means.

    Subclasses set ``name``, whether they accept global tokens and causal attention, implement ``forward``
    and the ``cost`` of their computation.
    """

    name: ClassVar[str]
    has_global_tokens: ClassVar[bool] = False
    supports_causal: ClassVar[bool] = True

    @classmethod
    def from_params(
        cls, params: Any, *, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, qkv_bias: bool
    ) -> AttentionKind:
        """The kind for one layer of the given sizes from its typed parameters (tformer.attention_params)."""
        raise NotImplementedError

    def check(self, q: torch.Tensor, mask: object, is_causal: bool) -> MaskSpec:
        """The mask spec to use, after rejecting what this kind cannot do with a one-line error."""
        if isinstance(mask, torch.Tensor):
            raise ValueError(
                f"attention_kind={self.name!r} takes a MaskSpec (positions, padding, global tokens), not a "
                "materialised additive mask"
            )
        if is_causal and not self.supports_causal:
            raise ValueError(
                f"attention_kind={self.name!r} is bidirectional only; a causal request cannot use it"
            )
        spec = mask if mask is not None else MaskSpec.aligned(q.shape[2], q.device)
        if spec.has_globals and not self.has_global_tokens:
            raise ValueError(
                f"attention_kind={self.name!r} has no global tokens; global_attention_mask needs "
                "attention_kind='local_global'"
            )
        return spec

    def allowed(self, spec: MaskSpec, batch: int, is_causal: bool) -> torch.Tensor:
        """(B, 1, T, S) bool: the pattern as a dense matrix (used for a few queries against a cache)."""
        raise NotImplementedError

    def dense(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        spec: MaskSpec,
        is_causal: bool,
        scale: float,
        dropout_p: float,
    ) -> torch.Tensor:
        """The pattern applied as a mask to exact attention: O(T S) memory, for T << S (cached decoding)."""
        allowed = self.allowed(spec, q.shape[0], is_causal)
        return masked_attention(q, k, v, allowed, scale, dropout_p)

    @classmethod
    def cost(cls, params: object, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """Forward FLOPs and score memory per head for one sequence (see ``AttentionCost``)."""
        raise NotImplementedError


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Exact attention restricted by a boolean (B|1, 1|H, T, S) matrix; rows with no key give zeros."""
    additive = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
    additive = additive.masked_fill(~allowed, torch.finfo(q.dtype).min)
    out, _ = reference_attention(q, k, v, additive, False, scale, dropout_p)
    return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) and index (B, G) -> (B, H, G, D): the rows of each batch element at ``index``."""
    B, H, _, D = x.shape
    return x.gather(2, index[:, None, :, None].expand(B, H, index.shape[1], D))


def global_indices(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) bool -> (index (B, G), valid (B, G)): each row's True positions first, G = the most in a row.

    Example: [[0, 1, 0, 1], [1, 0, 0, 0]] -> index [[1, 3], [0, *]], valid [[1, 1], [1, 0]].
    """
    counts = flags.sum(-1)
    G = int(counts.max()) if flags.numel() else 0
    order = torch.sort((~flags).to(torch.int8), dim=-1, stable=True).indices  # True positions first
    index = order[:, :G]
    valid = torch.arange(G, device=flags.device)[None] < counts[:, None]
    return index, valid


def softmax_probs(scores: torch.Tensor, allowed: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """softmax over the last dim of the allowed scores (all when ``allowed`` is None; in float32, as the
    reference path), then dropout. ``scores`` must be a fresh tensor: it is masked in place."""
    if allowed is not None:  # in place: the products that make scores do not keep them for backward
        scores = scores.masked_fill_(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
    if allowed is not None:
        seen = allowed.any(-1, keepdim=True)
        if not bool(
            seen.all()
        ):  # a row with no allowed key gives zeros, not a uniform average of hidden keys
            probs = probs * seen
    if dropout_p > 0.0:
        probs = nn.functional.dropout(probs, p=dropout_p)
    return probs


__all__ = [
    "AttentionCost",
    "AttentionKind",
    "MaskSpec",
    "gather_rows",
    "global_indices",
    "masked_attention",
    "repeat_kv",
    "softmax_probs",
]
