"""Position-wise feed-forward networks: the 2017 MLP and the gated (GLU) variants."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact (erf)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "silu": F.silu,
}


def get_activation(name: str):
    """The activation function for a name in relu, gelu, gelu_tanh, silu."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(_ACTIVATIONS)}") from None


class FeedForward(nn.Module):
    """FFN(x) = act(x W_up + b) W_down + b, applied at every position (d_model -> d_ff -> d_model)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.activation, self.act = activation, get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        return self.down(self.act(self.up(x)))


class GatedFeedForward(nn.Module):
    """GLU variants (Shazeer 2020): act(x W_gate) * (x W_up), then W_down. silu: SwiGLU, gelu: GeGLU."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", bias: bool = False) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.activation, self.act = activation, get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        return self.down(self.act(self.gate(x)) * self.up(x))


def make_feedforward(d_model: int, d_ff: int, activation: str, gated: bool, bias: bool) -> nn.Module:
    """The plain or gated feed-forward network."""
    cls = GatedFeedForward if gated else FeedForward
    return cls(d_model, d_ff, activation=activation, bias=bias)
