"""Position information: absolute embeddings added to the input (learned, sinusoidal), rotations of
queries and keys (RoPE), and additive attention biases (ALiBi, T5 relative buckets).

Shapes: B batch, T query length, S key length, H heads, D head_dim.

Tables derived from the constructor's arguments are non-persistent buffers that a module recomputes in
``reset_buffers()``: a model built on the meta device (``tformer.models.build_empty``) gets them back from
there, on the device the weights are loaded to.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def table_device() -> torch.device:
    """Where ``reset_buffers()`` computes a table: the default device, but the CPU while a model is built on the
    meta device (torch runs ``arange`` & co. there through reference code that imports ``torch._dynamo``,
    seconds and ~70 MB; the tables are small, and the loader recomputes them where the weights go)."""
    device = torch.get_default_device()
    return torch.device("cpu") if device.type == "meta" else device


class LearnedPositionalEmbedding(nn.Embedding):
    """A trained vector per position (GPT-2, BERT, BART). ``offset`` shifts indices (BART uses 2)."""

    def __init__(self, max_positions: int, dim: int, offset: int = 0) -> None:
        super().__init__(max_positions + offset, dim)
        self.offset = offset

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, d_model)
        """The embeddings of (B, T) position ids: (B, T, dim)."""
        return super().forward(position_ids + self.offset)


def sinusoidal_table(max_positions: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), as in the 2017 paper.

    Computed in float64 and returned as float32, shape (max_positions, dim).
    """
    pos = torch.arange(max_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # (dim/2,)
    angle = pos / torch.pow(10000.0, two_i / dim)  # (P, dim/2)
    table = torch.empty(max_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions (no parameters); the table is a non-persistent buffer."""

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.max_positions, self.dim = max_positions, dim
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the table, e.g. after construction on the meta device."""
        with torch.device(table_device()):
            table = sinusoidal_table(self.max_positions, self.dim)
        self.register_buffer("table", table, persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, d_model)
        """The table rows of (B, T) position ids: (B, T, dim)."""
        return self.table[position_ids]


def rope_inverse_frequencies(
    head_dim: int, theta: float, scaling: dict[str, Any] | None = None
) -> torch.Tensor:
    """theta^(-2i/D) for i < D/2, with optional Llama-3 frequency scaling. Shape (D/2,), fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if not scaling or scaling.get("rope_type", "default") == "default":
        return inv_freq
    if scaling["rope_type"] != "llama3":
        raise ValueError(f"unsupported rope scaling {scaling['rope_type']!r}; supported: default, llama3")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    # long wavelengths (low frequencies) are slowed by `factor`, short ones kept, the middle interpolated
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) in the half-split layout Llama's HF checkpoints use."""

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the inverse frequencies, e.g. after construction on the meta device."""
        with torch.device(table_device()):
            inv_freq = rope_inverse_frequencies(self.head_dim, self.theta, self.scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for each position, each (B, T, D)."""
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, D)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys: x (B, H, T, D), cos/sin (B, T, D)."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D)
    return x * cos + rotate_half(x) * sin


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al. 2022): a geometric sequence starting at 2^(-8/n)."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two_slopes(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two_slopes(closest) + extra)


class ALiBiBias(nn.Module):
    """Attention bias -slope_h * |q - k|: a linear penalty on distance, no position embeddings needed."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the slopes, e.g. after construction on the meta device."""
        with torch.device(table_device()):
            slopes = alibi_slopes(self.n_heads)
        self.register_buffer("slopes", slopes, persistent=False)

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos (T,), k_pos (S,) -> additive bias (1, H, T, S)."""
        distance = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (T, S)
        return (-self.slopes[:, None, None] * distance)[None]


def t5_relative_bucket(
    relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """Map relative positions (key - query) to buckets: exact for small distances, log-spaced up to
    ``max_distance``, everything beyond shares the last bucket. Causal (unidirectional) mode maps all
    future keys to bucket 0.

    Example: bidirectional, 32 buckets: -1 -> 1, 0 -> 0, +1 -> 17.
    """
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets; distance 0 is in the exact half so log(0) never reaches the result
    large = (
        max_exact
        + (
            torch.log(distance.float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(nn.Module):
    """T5's learned scalar bias per (bucket, head), shared by all layers of a stack."""

    def __init__(
        self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True
    ):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, n_heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos (T,), k_pos (S,) -> additive bias (1, H, T, S)."""
        relative = k_pos[None, :].long() - q_pos[:, None].long()  # (T, S)
        buckets = t5_relative_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)[None]  # (T, S, H) -> (1, H, T, S)
