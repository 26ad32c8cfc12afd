"""Sparse mixture-of-experts feed-forward (Shazeer et al. 2017; Mixtral): a router sends each token to
its top-k experts and mixes their outputs by the renormalised router probabilities.

Shapes: B batch, T tokens, N = B*T, E experts, k experts per token.
"""

from __future__ import annotations

import torch
from torch import nn

from tformer.nn.feedforward import make_feedforward


class MoEFeedForward(nn.Module):
    """E feed-forward experts behind a linear router; each token uses k of them.

    Args:
        d_model, d_ff: widths of every expert. n_experts: E. top_k: experts per token.
        activation, gated, bias: as for the dense feed-forward (Mixtral: silu, gated, no bias).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        top_k: int,
        activation: str = "silu",
        gated: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k={top_k} must be between 1 and n_experts={n_experts}")
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(
            make_feedforward(d_model, d_ff, activation, gated, bias) for _ in range(n_experts)
        )
        # (N, E) of the last call: the enclosing TransformerStack returns them with its output, and the model
        # turns them into its ``aux_loss`` (a module's forward returns one tensor, like a dense feed-forward)
        self.router_logits: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, d) -> router logits (N, E), top-k weights (N, k) summing to 1, expert indices (N, k)."""
        logits = self.router(x)
        probs = torch.softmax(logits.float(), dim=-1)
        weights, index = probs.topk(self.top_k, dim=-1)
        return logits, weights / weights.sum(dim=-1, keepdim=True), index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d); keeps this call's router logits (B*T, E) in ``router_logits``."""
        B, T, D = x.shape
        flat = x.reshape(B * T, D)  # (B, T, D) -> (N, D)
        logits, weights, index = self.route(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = (index == e).nonzero(as_tuple=True)  # tokens routed to expert e
            if token.numel():
                contribution = expert(flat[token]) * weights[token, slot, None]
                out.index_add_(0, token, contribution.to(out.dtype))
        self.router_logits = logits
        return out.view(B, T, D)


def load_balancing_loss(
    router_logits: list[torch.Tensor] | tuple[torch.Tensor, ...], top_k: int
) -> torch.Tensor:
    """Switch-Transformer auxiliary loss E * sum_e f_e * P_e over all layers' (N, E) router logits:
    f_e the fraction of routing slots sent to expert e, P_e its mean router probability. 1.0 when balanced.

    As in Hugging Face's Mixtral (``load_balancing_loss_func`` without a mask), f and P are taken over the
    tokens of every layer together, not per layer; f is divided by top_k, so this is Mixtral's value / top_k.
    """
    logits = torch.cat(router_logits)
    n_experts = logits.shape[-1]
    probs = torch.softmax(logits.float(), dim=-1)
    chosen = torch.nn.functional.one_hot(probs.topk(top_k, dim=-1).indices, n_experts).float()  # (N, k, E)
    fraction = chosen.sum(1).mean(0) / top_k
    return n_experts * (fraction * probs.mean(0)).sum()
