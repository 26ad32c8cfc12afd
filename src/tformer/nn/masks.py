"""Attention masks: causal, key-padding and sliding-window, combined with additive position biases.

A mask here is *additive*: 0 where a query may attend, the dtype's most negative value where it may not
(finite, so a fully masked row yields a uniform distribution instead of NaN). Shapes: B batch, H heads,
T queries, S keys; ``q_pos`` (T,) and ``k_pos`` (S,) are absolute positions (-1 marks an empty cache slot).
"""

from __future__ import annotations

import torch


def allowed_positions(
    q_pos: torch.Tensor, k_pos: torch.Tensor, *, causal: bool, sliding_window: int | None = None
) -> torch.Tensor:
    """Boolean (T, S): True where query q may see key k.

    Causal: k <= q. Sliding window W: q - W < k (W keys, itself included), as Mistral defines it.
    Example: q_pos=[0,1,2], k_pos=[0,1,2], causal, W=2 -> [[1,0,0],[1,1,0],[0,1,1]].
    """
    diff = q_pos[:, None] - k_pos[None, :]  # (T, S): how far back the key is
    allowed = (k_pos >= 0)[None, :].expand_as(diff)
    if causal:
        allowed = allowed & (diff >= 0)
    if sliding_window is not None:
        allowed = allowed & ((diff < sliding_window) if causal else (diff.abs() < sliding_window))
    return allowed


def padding_at(attention_mask: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """Key-padding mask (B, S) for keys at absolute positions ``k_pos``, from a (B, L) 1/0 mask."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, length), got shape {tuple(attention_mask.shape)}")
    needed = int(k_pos.max()) + 1
    if attention_mask.shape[1] < needed:
        raise ValueError(
            f"attention_mask covers {attention_mask.shape[1]} positions but keys reach position {needed - 1}; "
            "pass a mask over every position so far (past and current tokens)"
        )
    return attention_mask.bool()[:, k_pos.clamp(min=0)]


def build_attention_mask(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    *,
    causal: bool,
    dtype: torch.dtype,
    sliding_window: int | None = None,
    key_padding: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    aligned: bool = False,
) -> tuple[torch.Tensor | None, bool]:
    """The additive mask for one attention call, and whether plain ``is_causal`` can replace it.

    Args:
        q_pos: (T,) query positions. k_pos: (S,) key positions.
        causal: forbid keys after the query.
        dtype: dtype of the scores the mask is added to.
        sliding_window: keys at most W-1 positions back.
        key_padding: (B, S) bool, False for padding keys.
        bias: additive (1|B, H, T, S) position bias (ALiBi, T5).
        aligned: the caller guarantees q_pos == k_pos == arange(T) (no cache), enabling fast paths.

    Returns:
        (mask or None, is_causal): mask broadcastable to (B, H, T, S); when None, the attention needs
        only the flag (fused kernels then skip the mask entirely).
    """
    if bias is None and key_padding is None and sliding_window is None and (aligned or not causal):
        return None, causal
    allowed = allowed_positions(q_pos, k_pos, causal=causal, sliding_window=sliding_window)[None, None]
    if key_padding is not None:
        allowed = allowed & key_padding[:, None, None, :]  # (B, 1, T, S)
    base = bias.to(dtype) if bias is not None else torch.zeros((), dtype=dtype, device=q_pos.device)
    mask = base.expand(torch.broadcast_shapes(base.shape, allowed.shape))
    return mask.masked_fill(~allowed, torch.finfo(dtype).min), False


def padding_mask_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive (B, 1, 1, S) mask from a (B, S) 1/0 mask, for cross-attention over encoder outputs."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keep = attention_mask.bool()[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
