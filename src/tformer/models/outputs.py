"""The object every model's forward returns: Hugging Face's field names, so habits carry over."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """Outputs of a forward pass; fields a model does not produce stay None.

    logits: (B, T, vocab) for LM heads, (B, num_labels) for sequence classification.
    last_hidden_state: (B, T, d_model), the final hidden states (after the final norm).
    pooler_output: (B, d_model) for encoders with a pooler.
    encoder_last_hidden_state: (B, S, d_model) for encoder-decoder models.
    attentions / cross_attentions: per-layer (B, H, T, S) weights when ``output_attentions=True``
        (B, h, T, S) for a ``heads=`` selection; None for a layer left out by ``attention_layers=``.
    encoder_attentions: the encoder's self-attention maps of an encoder-decoder model, likewise.
    """

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None


def split_attentions(weights) -> tuple[tuple | None, tuple | None]:
    """Per-layer [(self, cross), ...] -> (self weights per layer, cross weights per layer or None)."""
    if weights is None:
        return None, None
    self_w = tuple(w[0] for w in weights)
    cross_w = tuple(w[1] for w in weights) if any(w[1] is not None for w in weights) else None
    return self_w, cross_w
