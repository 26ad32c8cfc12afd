"""Next-token score transforms with Hugging Face's exact semantics, as small functions.

Each takes scores (B, V) (float32 logits, or log-probabilities in beam search) and returns new scores;
``tokens`` (B, L) are the ids so far (the prompt included), so L is the current length. ``process_scores``
applies them in Hugging Face's order (its ``_get_logits_processor``): repetition penalty, no-repeat n-grams,
bad words, minimum length, forced BOS, forced EOS, suppressed tokens, suppression at the first new token;
then, only when sampling, temperature, top-k, top-p, min-p, typical-p. Filtered tokens get -inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tformer.generation.config import GenerationConfig, GenerationError

NEG_INF = float("-inf")


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


def apply_min_p(scores: torch.Tensor, min_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` times the most likely one's (and the
    ``min_tokens_to_keep`` most likely). Example: probabilities [0.5, 0.3, 0.2], min_p 0.5 -> the 0.2 goes."""
    probs = scores.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    return scores.masked_fill(remove.scatter(-1, keep, False), NEG_INF)


def apply_typical_p(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: rank tokens by how far their surprise ``-log p`` lies from the entropy and
    keep the closest ones until their probability reaches ``mass`` (Hugging Face's cut: the token that
    crosses the mass stays, as do ties with it)."""
    logp = scores.log_softmax(dim=-1)
    entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)  # (B, 1); nansum: 0 * -inf terms
    distance, order = (-logp - entropy).abs().sort(dim=-1)  # (B, V) closest to typical first
    cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (
        (cumulative < mass).sum(dim=1).clamp(max=distance.shape[-1] - 1)
    )  # (B,) index of the crossing token
    remove_sorted = distance > distance.gather(1, last[:, None])
    remove_sorted[..., :min_tokens_to_keep] = False
    return scores.masked_fill(remove_sorted.scatter(1, order, remove_sorted), NEG_INF)


def ban(scores: torch.Tensor, token_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """-inf at ``token_ids`` in every row (ids past the vocabulary are ignored, as in Hugging Face)."""
    ids = torch.as_tensor(token_ids, device=scores.device).reshape(-1)
    mask = torch.isin(torch.arange(scores.shape[-1], device=scores.device), ids)
    return scores.masked_fill(mask, NEG_INF)


def force(scores: torch.Tensor, token_ids: int | Sequence[int]) -> torch.Tensor:
    """Only ``token_ids`` stay possible: 0 there, -inf elsewhere (forced BOS / EOS)."""
    out = torch.full_like(scores, NEG_INF)
    out[:, token_ids] = 0
    return out


def apply_no_repeat_ngram(scores: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in the row (padding included, as in
    Hugging Face). Example: n 2, tokens [[5, 6, 5]] -> 6 banned (it would repeat "5 6")."""
    length = tokens.shape[1]
    if length < n:
        return scores
    vocab = scores.shape[-1]
    prefix = tokens[:, length + 1 - n :]  # (B, n-1): the n-gram being started
    windows = tokens.unfold(1, n, 1)  # (B, W, n): every n-gram so far
    matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)  # (B, W)
    banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
    # non-matching windows (and ids past the vocabulary) land in the spare last column
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], NEG_INF)


def apply_bad_words(
    scores: torch.Tensor, tokens: torch.Tensor, bad_words_ids: Sequence[Sequence[int]], eos_ids: Sequence[int]
) -> torch.Tensor:
    """Ban the last token of each bad sequence wherever the row ends with the rest of it.

    A one-token sequence is banned always, except an EOS id on its own (Hugging Face drops those).
    Example: bad [[7], [3, 4]], a row ending in 3 -> 7 and 4 banned there.
    """
    vocab = scores.shape[-1]
    banned = torch.zeros_like(scores, dtype=torch.bool)
    for word in bad_words_ids:
        if len(word) == 1 and word[0] in eos_ids:
            continue
        too_big = [i for i in word if i >= vocab]
        if too_big:
            raise GenerationError(f"bad_words_ids holds ids {too_big} past the vocabulary of {vocab}")
        prefix, last = list(word[:-1]), word[-1]
        if len(prefix) > tokens.shape[1]:
            continue
        if not prefix:
            banned[:, last] = True
            continue
        rows = (tokens[:, tokens.shape[1] - len(prefix) :] == torch.tensor(prefix, device=tokens.device)).all(
            -1
        )
        banned[rows, last] = True
    return scores.masked_fill(banned, NEG_INF)


def apply_length_rules(scores: torch.Tensor, length: int, config: GenerationConfig) -> torch.Tensor:
    """The rules that depend only on the current ``length``: minimum length (no EOS yet), forced BOS after
    the first token, forced EOS before the last, suppressed tokens, suppression at the first new token."""
    eos = config.eos_ids
    if config.min_length is not None and eos and length < config.min_length:
        scores = ban(scores, eos)
    if config.forced_bos_token_id is not None and length == 1:
        scores = force(scores, config.forced_bos_token_id)
    forced_eos = config.forced_eos_token_id
    if forced_eos is not None and config.max_length is not None and length == config.max_length - 1:
        scores = force(scores, [forced_eos] if isinstance(forced_eos, int) else list(forced_eos))
    if config.suppress_tokens is not None:
        scores = ban(scores, config.suppress_tokens)
    if config.begin_suppress_tokens is not None and config.input_length is not None:
        # an encoder-decoder whose first new token is forced starts one later (Hugging Face's begin_index)
        begin = config.input_length + (config.input_length == 1 and config.forced_bos_token_id is not None)
        if length == begin:
            scores = ban(scores, config.begin_suppress_tokens)
    return scores


def process_scores(
    scores: torch.Tensor,
    tokens: torch.Tensor,
    config: GenerationConfig,
    ignore_before: torch.Tensor | None = None,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """All enabled transforms in Hugging Face's order; ``tokens`` (B, L) are the ids so far.

    ``min_tokens_to_keep`` is what the sampling filters always keep (beam sampling keeps one per beam
    candidate). Length rules use the lengths ``config.resolve_lengths`` fixed.
    """
    if config.repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, tokens, config.repetition_penalty, ignore_before)
    if config.no_repeat_ngram_size:
        scores = apply_no_repeat_ngram(scores, tokens, config.no_repeat_ngram_size)
    if config.bad_words_ids is not None:
        scores = apply_bad_words(scores, tokens, config.bad_words_ids, config.eos_ids)
    scores = apply_length_rules(scores, tokens.shape[1], config)
    if not config.do_sample:
        return scores
    if config.temperature != 1.0:
        scores = apply_temperature(scores, config.temperature)
    if config.top_k is not None:
        scores = apply_top_k(scores, config.top_k, min_tokens_to_keep)
    if config.top_p is not None and config.top_p < 1.0:
        scores = apply_top_p(scores, config.top_p, min_tokens_to_keep)
    if config.min_p is not None:
        scores = apply_min_p(scores, config.min_p, min_tokens_to_keep)
    if config.typical_p is not None and config.typical_p < 1.0:
        scores = apply_typical_p(scores, config.typical_p, min_tokens_to_keep)
    return scores
