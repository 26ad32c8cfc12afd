"""Preallocated key/value caches for incremental decoding.

Buffers are allocated once by ``setup_caches`` and written in place at ``input_pos``; nothing grows by
concatenation. Shapes: B batch, Hkv key/value heads, S slots, D head_dim; ``input_pos`` (T,) absolute positions.
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """One slot per absolute position, 0 .. max_seq_len-1."""

    # a single new token at position p gets keys 0..p back: all visible, so it needs no causal mask
    single_query_sees_all_keys = True

    def __init__(
        self,
        batch_size: int,
        n_kv_heads: int,
        max_seq_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.max_seq_len = max_seq_len

    def key_positions(self, input_pos: torch.Tensor) -> torch.Tensor:
        """Absolute positions of the keys that ``update`` will return for these queries: (S,)."""
        end = int(input_pos.max()) + 1
        if end > self.max_seq_len:
            raise ValueError(f"position {end - 1} is past the cache's max_seq_len={self.max_seq_len}")
        return torch.arange(end, device=input_pos.device)

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, Hkv, T, D) at ``input_pos`` and return the keys/values of positions 0..max(input_pos)."""
        self.k[:, :, input_pos] = k
        self.v[:, :, input_pos] = v
        end = int(input_pos.max()) + 1
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]."""
        self.k.copy_(self.k.index_select(0, index))
        self.v.copy_(self.v.index_select(0, index))

    def rewind(self, end: int, shift: torch.Tensor | None = None) -> None:
        """Keep positions < ``end`` (speculative decoding drops rejected tokens), moving row b's entries from
        position p to p + shift[b] (rows realigned after accepting different numbers of tokens).

        Entries at positions >= ``end`` are dropped: ``update`` rewrites them before any query can see them.
        A shifted row's valid entries must stay inside 0 .. max_seq_len - 1.
        """
        if shift is None or not bool(shift.any()):
            return
        span = min(self.max_seq_len, end + max(0, -int(shift.min())))
        rows = shift.nonzero().flatten()
        # new position p of row b takes old position p - shift[b]; the modulo only touches dropped entries
        source = (torch.arange(span, device=shift.device)[None, :] - shift[rows, None]) % span  # (R, span)
        for buf in (self.k, self.v):
            index = source[:, None, :, None].expand(-1, buf.shape[1], -1, buf.shape[3])  # (R, Hkv, span, D)
            buf[rows, :, :span] = buf[rows, :, :span].gather(2, index)

    def reset(self) -> None:
        """Zero the buffers before a new sequence."""
        self.k.zero_()
        self.v.zero_()

    def nbytes(self) -> int:
        """Bytes held by the key and value buffers."""
        return self.k.numel() * self.k.element_size() * 2


class RollingKVCache(KVCache):
    """A ring buffer of ``window`` slots for sliding-window attention: exact past the window.

    Position p lives in slot p % window. A single-token step writes first (evicting p - window, which the
    window already hides) and attends over the ring; a multi-token chunk attends over the ring plus the
    chunk, then keeps the chunk's last ``window`` tokens.
    """

    single_query_sees_all_keys = False  # empty slots (-1) must stay masked

    def __init__(
        self,
        batch_size: int,
        n_kv_heads: int,
        window: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(batch_size, n_kv_heads, window, head_dim, dtype, device)
        self.window = window
        self.register_buffer(
            "positions", torch.full((window,), -1, dtype=torch.long, device=device), persistent=False
        )

    def key_positions(self, input_pos: torch.Tensor) -> torch.Tensor:
        """(S,) positions of the keys ``update`` returns (-1: an empty slot).

        One token: the ring's slots after its write. A chunk: the slots before it, then the chunk's positions.
        """
        if input_pos.numel() == 1:
            pos = self.positions.clone()
            pos[input_pos % self.window] = input_pos
            return pos
        return torch.cat([self.positions, input_pos])

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, Hkv, T, D) into the ring and return the keys/values the queries attend over.

        One token: the ring after the write, (B, Hkv, window, D). A chunk of T > 1 tokens: the ring before
        the write followed by the chunk, (B, Hkv, window + T, D), so no chunk token evicts a key that an
        earlier token of the chunk still sees. ``key_positions`` labels each returned key.
        """
        if input_pos.numel() == 1:
            slot = input_pos % self.window
            self.k[:, :, slot], self.v[:, :, slot], self.positions[slot] = k, v, input_pos
            return self.k, self.v
        k_all, v_all = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        keep = slice(-min(self.window, input_pos.numel()), None)
        slots = input_pos[keep] % self.window
        self.k[:, :, slots], self.v[:, :, slots] = k[:, :, keep], v[:, :, keep]
        self.positions[slots] = input_pos[keep]
        return k_all, v_all

    def rewind(self, end: int, shift: torch.Tensor | None = None) -> None:
        """``KVCache.rewind`` on the ring: rows rotate by their shift; slot s is then labelled with the newest
        position < ``end`` that maps to it.

        Exact while the ring has at least W + (tokens written since the last rewind) - 1 slots, W the model's
        sliding window (``setup_caches(window_slack=...)``): the keys a later query can see (its last W
        positions) were then never overwritten. Slots labelled with older positions may hold rejected or
        shifted-in entries; the sliding window hides them.
        """
        ring = self.window
        if shift is not None and bool(shift.any()):
            rows = shift.nonzero().flatten()
            source = (
                torch.arange(ring, device=shift.device)[None, :] - shift[rows, None]
            ) % ring  # (R, ring)
            for buf in (self.k, self.v):
                index = source[:, None, :, None].expand(-1, buf.shape[1], -1, buf.shape[3])
                buf[rows] = buf[rows].gather(2, index)
        slots = torch.arange(ring, device=self.positions.device)
        newest = (end - 1) - (end - 1 - slots) % ring  # (ring,) the newest position < end in each slot
        self.positions.copy_(newest.masked_fill(newest < 0, -1))

    def reset(self) -> None:
        """Zero the buffers and mark every slot empty."""
        super().reset()
        self.positions.fill_(-1)


class StaticKV(nn.Module):
    """Cross-attention keys/values: computed from the encoder output once per input, reused every step."""

    def __init__(self) -> None:
        super().__init__()
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)

    def reset(self) -> None:
        """Forget the keys/values: the next input computes them again from its encoder output."""
        self.k = self.v = None
