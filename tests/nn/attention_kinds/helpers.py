"""Shared pieces of the attention-kind tests: exact attention under a boolean mask, random inputs, and a
probe of the largest tensor a computation creates."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def exact_with_mask(q, k, v, allowed: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v over the keys ``allowed`` (B|1, 1, T, S) marks; rows with none give zeros."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return probs @ v


def qkv(B: int, H: int, Hkv: int, T: int, D: int, seed: int = 0, S: int | None = None):
    g = torch.Generator().manual_seed(seed)
    S = S or T
    return (
        torch.randn(B, H, T, D, generator=g),
        torch.randn(B, Hkv, S, D, generator=g),
        torch.randn(B, Hkv, S, D, generator=g),
    )


def padding_mask(lengths: list[int], T: int) -> torch.Tensor:
    """(B, T) 1 for the first ``lengths[b]`` tokens of row b."""
    return (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()


def assert_rows_close(ours, ref, allowed: torch.Tensor, atol: float = 1e-6) -> None:
    """ours == ref on every query row that sees at least one key (rows seeing none are defined as zero)."""
    rows = allowed.any(-1).expand(ours.shape[:-1])  # (B, H, T)
    diff = (ours - ref).abs().amax(-1)[rows].max()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol:g}"


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns inside the ``with``."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out
