"""Losses: the model returns logits; these turn logits and labels into the training objective.

Labels equal to ``IGNORE_INDEX`` (-100) are padding, unmasked MLM positions or prompt tokens: they add
nothing to the loss, its gradient or the token count.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not ``ignore_index``.

    logits (..., V), labels (...). Label smoothing moves ``label_smoothing`` of the target mass to a uniform
    distribution over the vocabulary; with ``pad_token_id`` the padding token gets none of it (the
    Annotated Transformer's padding-aware smoothing). Ignored positions contribute nothing either way.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    if label_smoothing == 0.0 or pad_token_id is None:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index, label_smoothing=label_smoothing)
    keep = labels != ignore_index
    logp = F.log_softmax(logits[keep], dim=-1)  # (N, V)
    nll = -logp.gather(1, labels[keep, None]).squeeze(1)
    others = torch.ones(logits.shape[-1], device=logits.device, dtype=torch.bool)
    others[pad_token_id] = False
    smooth = -logp[:, others].mean(dim=-1)  # uniform over every class but padding
    return ((1.0 - label_smoothing) * nll + label_smoothing * smooth).mean()


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Next-token loss: logits (B, T, V) at t predict labels[t + 1] (Hugging Face's shift convention)."""
    return token_cross_entropy(logits[:, :-1], labels[:, 1:], label_smoothing, ignore_index)


def nll_sum(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[float, int]:
    """(summed negative log-likelihood, number of counted positions): the parts of a corpus-level mean."""
    flat = labels.reshape(-1)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=ignore_index, reduction="sum"
    )
    return float(loss), int((flat != ignore_index).sum())
