"""Losses: the model returns logits; these turn logits and labels into the training objective."""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
                        ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not ``ignore_index``.

    logits (..., V), labels (...). Label smoothing spreads ``label_smoothing`` of the target mass uniformly
    over the vocabulary; ignored positions (padding) contribute nothing either way.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=ignore_index, label_smoothing=label_smoothing)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Next-token loss: logits (B, T, V) at t predict labels[t + 1] (Hugging Face's shift convention)."""
    return token_cross_entropy(logits[:, :-1], labels[:, 1:], label_smoothing, ignore_index)
