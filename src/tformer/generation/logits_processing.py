"""Next-token score transforms with Hugging Face's exact semantics, as small functions.

Each takes scores (B, V) (float32 logits, or log-probabilities in beam search) and returns new scores.
``process_scores`` applies them in Hugging Face's order: repetition penalty, then (only when sampling)
temperature, top-k, top-p. Filtered tokens get -inf.
"""

from __future__ import annotations

import torch

from tformer.generation.config import GenerationConfig


def apply_repetition_penalty(
    scores: torch.Tensor, tokens: torch.Tensor, penalty: float, ignore_before: torch.Tensor | None = None
) -> torch.Tensor:
    """Penalise every token already in ``tokens`` (B, L) once: score / penalty if positive, else * penalty.

    ``ignore_before`` (B,) skips each row's first positions (left padding), as Hugging Face does with
    the prompt's attention mask. Example: penalty 2, scores [4, -4, 1], tokens [[0, 1]] -> [2, -8, 1].
    """
    vocab = scores.shape[-1]
    if ignore_before is not None:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        tokens = tokens.masked_fill(positions[None, :] < ignore_before[:, None], vocab)
    tokens = tokens.clamp(
        max=vocab
    )  # ids past the output vocabulary (and ignored ones) go to a dropped column
    padded = torch.nn.functional.pad(scores, (0, 1))
    picked = padded.gather(1, tokens)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return padded.scatter(1, tokens, picked)[:, :vocab]


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """scores / temperature (flatter above 1, sharper below)."""
    return scores / temperature


def apply_top_k(scores: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the top_k highest scores per row (ties with the k-th are all kept), -inf elsewhere."""
    k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]  # (B, 1)
    return scores.masked_fill(scores < kth, float("-inf"))


def apply_top_p(scores: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probability reaches top_p.

    As in Hugging Face: sort ascending, drop tokens whose cumulative probability is <= 1 - top_p, always
    keep the ``min_tokens_to_keep`` most probable.
    """
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


def process_scores(
    scores: torch.Tensor,
    tokens: torch.Tensor,
    config: GenerationConfig,
    ignore_before: torch.Tensor | None = None,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """All enabled transforms in Hugging Face's order; ``tokens`` (B, L) are the ids so far."""
    if config.repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, tokens, config.repetition_penalty, ignore_before)
    if not config.do_sample:
        return scores
    if config.temperature != 1.0:
        scores = apply_temperature(scores, config.temperature)
    if config.top_k is not None:
        scores = apply_top_k(scores, config.top_k, min_tokens_to_keep)
    if config.top_p is not None and config.top_p < 1.0:
        scores = apply_top_p(scores, config.top_p, min_tokens_to_keep)
    return scores
