"""Which drafted tokens the target model accepts, and the token it adds after them.

Greedy: a drafted token is accepted while it equals the target's argmax; the next token is the argmax where
the first mismatch happened (or after the last drafted token). Sampling (Leviathan et al. 2023, Chen et al.
2023, as Hugging Face's ``_speculative_sampling``): accept token d drafted from q with probability
min(1, p(d) / q(d)); at the first rejection sample from normalise(max(p - q, 0)); when every drafted token is
accepted, one bonus token from p. Each output token is then distributed exactly as plain sampling from p.
A draft without probabilities (prompt lookup) is a point mass: q = one-hot.

Shapes: B rows, K drafted tokens (the longest draft of the round), V vocabulary; ``lengths`` (B,) says how
many of each row's K tokens are real (prompt lookup finds drafts of different lengths).
"""

from __future__ import annotations

import torch


def leading_true(accepted: torch.Tensor) -> torch.Tensor:
    """(B, K) bool -> (B,) count of leading True values. Example: [[1, 1, 0, 1]] -> [2]."""
    return accepted.long().cumprod(dim=1).sum(dim=1)


def accept_probability(p_draft: torch.Tensor, q_draft: torch.Tensor) -> torch.Tensor:
    """min(1, p(d) / q(d)) for each drafted token d: the rule that makes speculative sampling exact."""
    return (p_draft / q_draft).clamp(max=1.0)


def verify_greedy(
    scores: torch.Tensor, drafts: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy verification.

    Args:
        scores: (B, K + 1, V) the target's processed scores after each prefix (no draft, d1, .., dK).
        drafts: (B, K) drafted tokens. lengths: (B,) real drafted tokens per row.

    Returns:
        (tokens (B, K + 1), accepted (B,)): row i's new tokens are tokens[i, : accepted[i] + 1].
    """
    best = scores.argmax(dim=-1)  # (B, K + 1)
    K = drafts.shape[1]
    real = torch.arange(K, device=drafts.device)[None, :] < lengths[:, None]
    accepted = leading_true((drafts == best[:, :K]) & real)
    return best, accepted  # accepted drafts equal the argmax, so `best` already holds them


def verify_sampled(
    scores: torch.Tensor,
    drafts: torch.Tensor,
    lengths: torch.Tensor,
    draft_probs: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling; as ``verify_greedy`` with ``draft_probs`` (B, K, V) the distributions q the
    drafts were sampled from (None: drafts are fixed tokens, q one-hot)."""
    B, K = drafts.shape
    p = torch.softmax(scores, dim=-1)  # (B, K + 1, V)
    if draft_probs is None:
        draft_probs = torch.nn.functional.one_hot(drafts, p.shape[-1]).to(p.dtype)  # (B, K, V)
    p_draft = p[:, :K].gather(2, drafts[..., None]).squeeze(2)  # (B, K)
    q_draft = draft_probs.gather(2, drafts[..., None]).squeeze(2)
    real = torch.arange(K, device=drafts.device)[None, :] < lengths[:, None]
    r = torch.rand(B, K, generator=generator, device=p.device)
    accepted = leading_true((r < accept_probability(p_draft, q_draft.clamp(min=1e-30))) & real)  # (B,)

    rows = torch.arange(B, device=p.device)
    p_next = p[rows, accepted]  # (B, V) the target's distribution where the row stops
    # q at that position for a rejection; zero after the last real draft (bonus token: plain p)
    q_pad = torch.cat([draft_probs, draft_probs.new_zeros(B, 1, p.shape[-1])], dim=1)
    q_next = torch.where((accepted < lengths)[:, None], q_pad[rows, accepted], 0.0)
    residual = (p_next - q_next).clamp(min=0)
    total = residual.sum(dim=-1, keepdim=True)
    residual = torch.where(total > 0, residual / total.clamp(min=1e-30), p_next)  # p == q: nothing to correct
    last = torch.multinomial(residual, num_samples=1, generator=generator).squeeze(1)  # (B,)

    cols = torch.arange(K + 1, device=p.device)[None, :]
    tokens = torch.cat([drafts, last[:, None]], dim=1)  # (B, K + 1)
    tokens = torch.where(cols < accepted[:, None], tokens, last[:, None])
    return tokens, accepted
