"""Choosing the next token from processed scores: greedy argmax or one multinomial draw."""

from __future__ import annotations

import torch


def greedy(scores: torch.Tensor) -> torch.Tensor:
    """Most likely token per row: scores (B, V) -> (B,)."""
    return scores.argmax(dim=-1)


def sample(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from softmax(scores): (B, V) -> (B,).

    Uses ``torch.multinomial`` on the probabilities as Hugging Face does, so with the same random state
    (``torch.manual_seed(s)`` there, ``seed=s`` here) both draw the same tokens.
    """
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def select_next(
    scores: torch.Tensor, do_sample: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``sample`` or ``greedy``."""
    return sample(scores, generator) if do_sample else greedy(scores)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A private generator for ``seed`` (the global RNG is left untouched), or None for the global one."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)
