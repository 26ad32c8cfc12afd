"""BigBird block-sparse attention: window, global and random blocks, O(T) blocks of scores.

The sequence is cut into blocks of b tokens (the last one padded). Query block i sees key blocks j with
|i - j| <= window_blocks (0 <= i - j <= window_blocks when causal), the first ``global_blocks`` blocks, and
``random_blocks`` other blocks drawn from a generator seeded by (seed, i), so the pattern is the same on every
call (causal rows draw only among earlier blocks, so a row's pattern does not depend on the length). The
global blocks see every key. Causal attention also hides the later keys of the diagonal block.

Each non-global query block gathers its K key blocks (K = the longest row of the layout): scores are
(T, K b) instead of (T, T); the global rows attend densely, (g b, T).
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from tformer.attention_params import BlockSparseParams
from tformer.nn.attention import repeat_kv
from tformer.nn.attention_kinds.base import (
    AttentionCost,
    AttentionKind,
    MaskSpec,
    global_indices,
    softmax_probs,
)


@functools.lru_cache(maxsize=64)
def block_layout(
    n_blocks: int, window_blocks: int, global_blocks: int, random_blocks: int, seed: int, causal: bool
) -> torch.Tensor:
    """(n_blocks, n_blocks) bool: True where query block i attends to key block j.

    Example: 4 blocks, window 0, 1 global, 0 random, bidirectional -> row 0 all True, rows 1-3 see block 0
    and themselves.
    """
    i, j = torch.arange(n_blocks)[:, None], torch.arange(n_blocks)[None]
    d = i - j
    layout = ((d >= 0) & (d <= window_blocks)) if causal else d.abs() <= window_blocks
    layout = layout | (j < global_blocks) | (i < global_blocks)
    if causal:
        layout = layout & (d >= 0)
    for row in range(global_blocks, n_blocks):
        candidates = (~layout[row]).nonzero().flatten()
        if causal:
            candidates = candidates[candidates < row]
        if random_blocks and candidates.numel():
            g = torch.Generator().manual_seed(seed * 1_000_003 + row)
            layout[row, candidates[torch.randperm(candidates.numel(), generator=g)[:random_blocks]]] = True
    return layout


class BlockSparseAttention(AttentionKind):
    """Block-sparse attention (BigBird's ITC pattern: window, global and random blocks).

    Args:
        block_size: tokens per block, >= 1. window_blocks: blocks on each side (behind, causal), >= 0.
        global_blocks: leading blocks that see and are seen by everything, >= 0.
        random_blocks: extra blocks per query block, drawn from ``seed``, >= 0.
    """

    name = "block_sparse"

    def __init__(
        self,
        *,
        block_size: int = 64,
        window_blocks: int = 1,
        global_blocks: int = 1,
        random_blocks: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for field, value, low in (
            ("block_size", block_size, 1),
            ("window_blocks", window_blocks, 0),
            ("global_blocks", global_blocks, 0),
            ("random_blocks", random_blocks, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"block_sparse {field} must be an integer >= {low}, got {value!r}")
        self.block_size, self.window_blocks, self.global_blocks = block_size, window_blocks, global_blocks
        self.random_blocks, self.seed = random_blocks, seed

    @classmethod
    def from_params(cls, params: BlockSparseParams, **sizes: object) -> BlockSparseAttention:
        """The kind from its typed parameters (the layer's sizes do not matter)."""
        return cls(
            block_size=params.block_size,
            window_blocks=params.window_blocks,
            global_blocks=params.global_blocks,
            random_blocks=params.random_blocks,
            seed=params.seed,
        )

    def layout(self, n_blocks: int, causal: bool) -> torch.Tensor:
        """(n_blocks, n_blocks) bool: which key blocks each query block sees."""
        return block_layout(
            n_blocks, self.window_blocks, self.global_blocks, self.random_blocks, self.seed, causal
        ).clone()

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
        if not spec.is_aligned():
            return self.dense(q, k, v, spec, is_causal, scale, dropout_p)
        B, H, T, D = q.shape
        b = self.block_size
        nb = -(-T // b)
        g = min(self.global_blocks, nb)
        k, v = repeat_kv(k, H // k.shape[1]), repeat_kv(v, H // v.shape[1])
        key_ok = spec.key_ok(B)  # (B, T)
        dense_rows = self._global_rows(q[:, :, : g * b], k, v, key_ok, is_causal, scale, dropout_p)
        if g == nb:
            return dense_rows
        sparse_rows = self._sparse_rows(q, k, v, key_ok, nb, g, is_causal, scale, dropout_p)
        return torch.cat([dense_rows, sparse_rows], dim=2)[:, :, :T]

    def _global_rows(self, q, k, v, key_ok, causal, scale, dropout_p):
        """The global blocks' queries (B, H, g b, D) over every key."""
        scores = (q @ k.transpose(-1, -2)) * scale  # (B, H, g b, T)
        allowed = key_ok[:, None, None, :]
        if causal:
            T = k.shape[2]
            allowed = allowed & (torch.arange(T)[None] <= torch.arange(q.shape[2])[:, None]).to(q.device)
        return softmax_probs(scores, allowed, dropout_p) @ v

    def _sparse_rows(self, q, k, v, key_ok, nb, g, causal, scale, dropout_p):
        """Query blocks g.. over their gathered key blocks: scores (B, H, nb - g, b, K b)."""
        B, H, T, D = q.shape
        b, Tp = self.block_size, nb * self.block_size
        idx, valid = global_indices(
            self.layout(nb, causal)[g:].to(q.device)
        )  # (nb - g, K): each row's blocks
        K = idx.shape[1]
        qb = F.pad(q, (0, 0, 0, Tp - T)).view(B, H, nb, b, D)[:, :, g:]  # (B, H, nb - g, b, D)
        kb = F.pad(k, (0, 0, 0, Tp - T)).view(B, H, nb, b, D)[:, :, idx].reshape(B, H, nb - g, K * b, D)
        vb = F.pad(v, (0, 0, 0, Tp - T)).view(B, H, nb, b, D)[:, :, idx].reshape(B, H, nb - g, K * b, D)
        scores = (qb @ kb.transpose(-1, -2)) * scale  # (B, H, nb - g, b, K b)

        k_pos = (idx[:, :, None] * b + torch.arange(b, device=q.device)).reshape(nb - g, K * b)
        block_ok = valid[:, :, None].expand(nb - g, K, b).reshape(nb - g, K * b)
        ok = F.pad(key_ok, (0, Tp - T), value=False)[:, k_pos] & block_ok  # (B, nb - g, K b)
        allowed = ok[:, None, :, None, :]  # (B, 1, nb - g, 1, K b)
        if causal:
            q_pos = torch.arange(g * b, Tp, device=q.device).view(nb - g, b)
            allowed = allowed & (k_pos[:, None, :] <= q_pos[:, :, None])  # (B, 1, nb - g, b, K b)
        out = softmax_probs(scores, allowed, dropout_p) @ vb  # (B, H, nb - g, b, D)
        return out.reshape(B, H, (nb - g) * b, D)

    def allowed(self, spec: MaskSpec, batch: int, is_causal: bool) -> torch.Tensor:
        """(B, 1, T, S) bool: the block layout at these positions, causality and padding."""
        b = self.block_size
        q_blk, k_blk = spec.q_pos // b, spec.k_pos.clamp(min=0) // b
        nb = int(max(q_blk.max(), k_blk.max())) + 1
        seen = self.layout(nb, is_causal).to(spec.q_pos.device)[q_blk][:, k_blk]  # (T, S)
        if is_causal:
            seen = seen & (spec.k_pos[None, :] <= spec.q_pos[:, None])
        return (seen[None] & spec.key_ok(batch)[:, None, :])[:, None]

    @classmethod
    def cost(cls, params: BlockSparseParams, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """4 D FLOPs per score; scores: the global rows (g b) x T plus the other blocks' b x K b each, K the
        longest row of the layout (shorter rows are padded to it)."""
        b = params.block_size
        nb = -(-seq_len // b)
        g = min(params.global_blocks, nb)
        rows = block_layout(nb, params.window_blocks, g, params.random_blocks, params.seed, causal)[g:]
        K = int(rows.sum(-1).max()) if nb > g else 0
        dense = min(g * b, seq_len) * seq_len
        sparse = (nb - g) * b * K * b
        return AttentionCost(flops=4 * head_dim * (dense + sparse), score_elements=dense + sparse)
