"""Beam search with Hugging Face's exact semantics (its vectorised ``_beam_search`` of transformers 5).

Per step, for each batch item: add each beam's next-token log-probs to its running score, take the
top K = max(2, 1 + n_eos) * num_beams continuations over all beams (or sample K of them), mark those that
end (EOS, stop string, max length), keep the best ``num_beams`` unfinished ones running, and merge the
finished ones among the top ``num_beams`` into a pool of ``num_beams`` hypotheses scored
``sum log p / generated_len ** length_penalty``. ``early_stopping`` True stops an item when its pool is
full; False / "never" stop when no running beam can beat the pool's worst (the heuristic differs).
Shapes: B batch, N num_beams, K candidates, L = prompt + max_new_tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tformer.generation.config import EarlyStopping
from tformer.generation.decode import DecodeContext, first_logits, next_logits
from tformer.generation.logits_processing import process_scores
from tformer.generation.protocols import CachedModel
from tformer.generation.runners import Runner

NEG = -1.0e9  # Hugging Face's "impossible" score


def gather_beams(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select along dim 1: t (B, N, ...) with index (B, M) -> (B, M, ...)."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


@dataclass
class BeamState:
    """Running beams and the pool of finished hypotheses, per batch item."""

    running: torch.Tensor  # (B, N, L) token ids of the running beams
    running_scores: torch.Tensor  # (B, N) summed log-probs
    running_origin: torch.Tensor  # (B, N, L - T) row the beam came from at each step (-1: not yet)
    sequences: torch.Tensor  # (B, N, L) finished hypotheses
    scores: torch.Tensor  # (B, N) their length-penalised scores
    origin: torch.Tensor  # (B, N, L - T)
    finished: torch.Tensor  # (B, N) pool slot holds a finished hypothesis
    improvable: torch.Tensor  # (B, 1) a running beam may still beat the pool


def init_state(prompt: torch.Tensor, batch_size: int, num_beams: int, total_len: int, fill: int) -> BeamState:
    """Beams of the prompt (B*N, T); only beam 0 starts live so the N beams do not pick the same tokens."""
    T = prompt.shape[1]
    running = torch.full((batch_size, num_beams, total_len), fill, dtype=torch.long, device=prompt.device)
    running[:, :, :T] = prompt.view(batch_size, num_beams, T)
    running_scores = torch.zeros(batch_size, num_beams, device=prompt.device)
    running_scores[:, 1:] = NEG
    origin = torch.full((batch_size, num_beams, total_len - T), -1, dtype=torch.int32, device=prompt.device)
    return BeamState(
        running=running,
        running_scores=running_scores,
        running_origin=origin,
        sequences=running.clone(),
        scores=torch.full((batch_size, num_beams), NEG, device=prompt.device),
        origin=origin.clone(),
        finished=torch.zeros(batch_size, num_beams, dtype=torch.bool, device=prompt.device),
        improvable=torch.ones(batch_size, 1, dtype=torch.bool, device=prompt.device),
    )


def top_continuations(
    acc: torch.Tensor,
    st: BeamState,
    cur: int,
    T: int,
    k: int,
    do_sample: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The K best (or sampled) continuations of acc (B, N*V): their scores, sequences and origins."""
    B, N = st.running_scores.shape
    if do_sample:
        idx = torch.multinomial(torch.softmax(acc, dim=-1), num_samples=k, generator=generator)
        top_scores = acc.gather(1, idx)
        # Sampled candidates come in draw order; sort them by score so that "the first N" means the N best,
        # which is what update_pool's in_top mask and the running-beam choice assume (HF does the same
        # since transformers 5.24; 5.23 let the first N *drawn* candidates finish instead).
        top_scores, order = top_scores.sort(dim=-1, descending=True)
        idx = idx.gather(1, order)
    else:
        top_scores, idx = torch.topk(acc, k=k)
    vocab = acc.shape[-1] // N
    beam = idx // vocab  # (B, K) which running beam each continuation extends
    seqs = gather_beams(st.running, beam)
    seqs[:, :, cur] = idx % vocab
    origin = gather_beams(st.running_origin, beam)
    origin[:, :, cur - T] = (beam + torch.arange(B, device=acc.device)[:, None] * N).to(origin.dtype)
    return top_scores, seqs, origin


def hits_stop(
    seqs: torch.Tensor, cur: int, total_len: int, ctx: DecodeContext, eos: torch.Tensor | None
) -> torch.Tensor:
    """(B, K) bool: candidate sequences (B, K, L) that end with this step's token."""
    B, K, _ = seqs.shape
    new = seqs[:, :, cur]
    hit = torch.full((B, K), cur + 1 >= total_len, dtype=torch.bool, device=seqs.device)
    if eos is not None:
        hit |= torch.isin(new, eos)
    if ctx.stop is not None:
        flat = seqs.reshape(B * K, -1)[:, : cur + 1]
        hit |= ctx.stop(flat, torch.ones(B * K, dtype=torch.bool, device=seqs.device)).view(B, K)
    return hit


def update_pool(
    st: BeamState,
    top_scores: torch.Tensor,
    seqs: torch.Tensor,
    origin: torch.Tensor,
    hit: torch.Tensor,
    cur: int,
    T: int,
    num_beams: int,
    length_penalty: float,
    early_stopping: EarlyStopping,
) -> None:
    """Merge the continuations that just finished (among the top N) into the pool of N best.

    top_scores / hit: (B, K) summed log-probs / ends here; seqs: (B, K, L); origin: (B, K, L - T).
    """
    K = seqs.shape[1]
    in_top = torch.arange(K, device=seqs.device) < num_beams
    just_finished = hit & in_top[None, :]
    scores = top_scores / ((cur + 1 - T) ** length_penalty)
    pool_full = torch.all(st.finished, dim=-1, keepdim=True) & (early_stopping is True)
    scores = scores + pool_full.to(torch.float32) * NEG
    scores = scores + (~st.improvable).to(torch.float32) * NEG
    scores = scores + (~just_finished) * NEG
    merged_scores = torch.cat((st.scores, scores), dim=1)
    best = torch.topk(merged_scores, k=num_beams)[1]
    st.sequences = gather_beams(torch.cat((st.sequences, seqs), dim=1), best)
    st.scores = gather_beams(merged_scores, best)
    st.origin = gather_beams(torch.cat((st.origin, origin), dim=1), best)
    st.finished = gather_beams(torch.cat((st.finished, just_finished), dim=1), best)


def still_improvable(
    st: BeamState, cur: int, T: int, total_len: int, length_penalty: float, early_stopping: EarlyStopping
) -> torch.Tensor:
    """(B, 1): could the best running beam still beat the worst finished hypothesis? (``cur`` is the new length)"""
    if early_stopping == "never" and length_penalty > 0.0:
        best_len = total_len - T
    else:
        best_len = cur - T
    best_running = st.running_scores[:, :1] / (best_len**length_penalty)
    worst = torch.where(st.finished, torch.min(st.scores, dim=1, keepdim=True)[0], NEG)
    return st.improvable & torch.any(best_running > worst, dim=-1, keepdim=True)


def beam_search(
    runner: Runner, model: CachedModel, ctx: DecodeContext, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run beam search over ``ctx.tokens`` (B*N, L) rows (each prompt repeated N times); ``model`` is the one
    ``runner`` drives, whose caches follow the beams.

    Returns:
        sequences (B * num_return_sequences, T + generated), their scores (B * num_return_sequences,) and
        beam indices (B * num_return_sequences, generated).
    """
    cfg, tokens = ctx.config, ctx.tokens
    N, T, L = cfg.num_beams, ctx.prompt_len, tokens.shape[1]
    eos = ctx.eos
    n_eos = 0 if eos is None else eos.numel()
    k = max(2, 1 + n_eos) * N
    pad = cfg.pad_token_id
    # Hugging Face fills unused positions with `pad or eos[0]` (so a pad id of 0 yields eos), or -1 without EOS
    fill = (pad if pad else cfg.eos_ids[0]) if eos is not None else -1
    st = init_state(tokens[:, :T], batch_size, N, L, fill)
    cur = T
    logits = first_logits(runner, ctx, tokens[:, :T])
    while True:
        ctx.record(logits)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        flat_running = st.running.view(batch_size * N, L)[:, :cur]
        log_probs = process_scores(log_probs, flat_running, cfg, ctx.ignore_before, min_tokens_to_keep=k // N)
        ctx.record_scores(log_probs)
        acc = (log_probs.view(batch_size, N, -1) + st.running_scores[:, :, None]).view(batch_size, -1)
        top_scores, seqs, origin = top_continuations(acc, st, cur, T, k, cfg.do_sample, ctx.generator)
        hit = hits_stop(seqs, cur, L, ctx, eos)
        masked = top_scores + hit.to(torch.float32) * NEG  # finished continuations cannot keep running
        keep = torch.topk(masked, k=N)[1]
        st.running, st.running_scores = gather_beams(seqs, keep), gather_beams(masked, keep)
        st.running_origin = gather_beams(origin, keep)
        update_pool(st, top_scores, seqs, origin, hit, cur, T, N, cfg.length_penalty, cfg.early_stopping)
        if ctx.use_cache:
            model.reorder_caches(st.running_origin[:, :, cur - T].reshape(-1).long())
        cur += 1
        st.improvable = still_improvable(st, cur, T, L, cfg.length_penalty, cfg.early_stopping)
        pool_done = bool(st.finished.all()) and cfg.early_stopping is True
        if not bool(st.improvable.any()) or pool_done or bool(hit.all()):
            break
        tokens_now = st.running.view(batch_size * N, L)
        logits = next_logits(runner, ctx, tokens_now, cur)
    return finalize(st, T, cfg.num_return_sequences)


def finalize(st: BeamState, T: int, num_return: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best ``num_return`` hypotheses per item, cropped to the longest one's length, with their scores
    and beam indices (the row each token was chosen from, -1 after a hypothesis ended)."""
    seqs = st.sequences[:, :num_return].flatten(0, 1)
    scores = st.scores[:, :num_return].flatten(0, 1)
    origin = st.origin[:, :num_return].flatten(0, 1)
    generated = int((origin + 1).bool().sum(dim=1).max())
    return seqs[:, : T + generated], scores, origin[:, :generated].long()
