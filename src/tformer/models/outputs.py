"""The object every model's forward returns: Hugging Face's field names, so habits carry over."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tformer.nn.moe import load_balancing_loss
from tformer.nn.stack import LayerWeights


@dataclass
class ModelOutput:
    """Outputs of a forward pass; fields a model does not produce stay None.

    logits: (B, T, vocab) for LM heads ((B, k, vocab) with ``logits_to_keep``), (B, num_labels) for
        sequence classification.
    last_hidden_state: (B, T, d_model), the final hidden states (after the final norm).
    pooler_output: (B, d_model) for encoders with a pooler.
    encoder_last_hidden_state: (B, S, d_model) for encoder-decoder models.
    attentions / cross_attentions: per-layer (B, H, T, S) weights when ``output_attentions=True``
        (B, h, T, S) for a ``heads=`` selection; None for a layer left out by ``attention_layers=``.
    encoder_attentions: the encoder's self-attention maps of an encoder-decoder model, likewise.
    aux_loss: mixture-of-experts models: the load-balancing loss of this pass (a scalar); None otherwise.
    router_logits: mixture-of-experts models: each MoE layer's router logits (B*T, E).
    """

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    aux_loss: torch.Tensor | None = None
    router_logits: tuple[torch.Tensor, ...] | None = None


def split_attentions(weights: list[LayerWeights] | None) -> tuple[tuple | None, tuple | None]:
    """Per-layer [(self, cross), ...] -> (self weights per layer, cross weights per layer or None)."""
    if weights is None:
        return None, None
    self_w = tuple(w[0] for w in weights)
    cross_w = tuple(w[1] for w in weights) if any(w[1] is not None for w in weights) else None
    return self_w, cross_w


def keep_positions(h: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """The positions an LM head should score (Hugging Face's ``logits_to_keep``): (B, T, D) -> (B, k, D).

    An int k keeps the last k positions (0 keeps all); a 1-D tensor of indices keeps those positions.
    Example: T=5, logits_to_keep=1 -> h[:, 4:]; logits_to_keep=tensor([0, 3]) -> h[:, [0, 3]].
    """
    if isinstance(logits_to_keep, torch.Tensor):
        if logits_to_keep.dim() != 1 or logits_to_keep.is_floating_point():
            raise ValueError(
                f"logits_to_keep as a tensor must be 1-D integer positions, got shape "
                f"{tuple(logits_to_keep.shape)} and dtype {logits_to_keep.dtype}"
            )
        return h[:, logits_to_keep]
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
        raise ValueError(
            f"logits_to_keep must be an int >= 0 (0 keeps every position) or a 1-D tensor of positions, "
            f"got {logits_to_keep!r}"
        )
    return h[:, -logits_to_keep:] if logits_to_keep else h


def moe_aux_loss(router_logits: tuple[torch.Tensor, ...], top_k: int) -> torch.Tensor | None:
    """The load-balancing loss over every MoE layer's router logits, or None for a model without experts."""
    return load_balancing_loss(router_logits, top_k) if router_logits else None
