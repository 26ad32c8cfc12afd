"""Speculative sampling is exact: on an 8-token vocabulary, the first three tokens of tens of thousands of
seeded samples follow plain sampling's distribution (computed exactly from the target) by a chi-square test,
with and without processors, for a draft model and for prompt lookup; a deliberately wrong acceptance rule
fails the same test. Batched == single lets one big batch stand for many separate generations."""

from __future__ import annotations

import pytest
import torch

import tformer
import tformer.generation.acceptance as acceptance
from tformer.generation import GenerationConfig
from tformer.generation.logits_processing import process_scores

VOCAB, STEPS, ROWS = 8, 3, 20_000
PROMPT = [1, 5, 7, 1, 5]  # repeats itself: prompt lookup drafts "7, 1, 5" (p(7) = 0.63)
P_MIN = 1e-3  # the correct rule passes with these seeds; the wrong one lands below 1e-12
PROCESSORS = {
    "plain": {},
    "processed": {"temperature": 0.7, "top_k": 6, "top_p": 0.9, "repetition_penalty": 1.3},
}


@pytest.fixture(scope="module")
def pair():
    """A target and a smaller draft with clearly different next-token distributions."""
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(
        vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, max_seq_len=16, init_std=0.3
    )
    target = tformer.build(cfg).eval()
    torch.manual_seed(1)
    draft = tformer.build(
        cfg.replace(d_model=8, n_layers=1, n_heads=1, n_kv_heads=None, head_dim=None, d_ff=None)
    ).eval()
    return target, draft


@torch.no_grad()
def exact_distribution(model, options: dict) -> torch.Tensor:
    """P(t1, t2, t3 | PROMPT) under plain sampling, (VOCAB ** STEPS,) indexed t1 * 64 + t2 * 8 + t3."""
    cfg = GenerationConfig(do_sample=True, **options)
    prefixes, probs = torch.tensor([PROMPT]), torch.ones(1)
    for _ in range(STEPS):
        scores = process_scores(model(prefixes).logits[:, -1].float(), prefixes, cfg)
        probs = (probs[:, None] * torch.softmax(scores, dim=-1)).reshape(-1)  # (n * V,)
        n = prefixes.shape[0]
        prefixes = torch.cat(
            [prefixes.repeat_interleave(VOCAB, 0), torch.arange(VOCAB).repeat(n)[:, None]], 1
        )
    return probs


def sample_counts(model, seed: int, **options) -> tuple[torch.Tensor, float | None]:
    """Counts of each (t1, t2, t3) over ROWS seeded samples (one batch of identical prompts), and the
    acceptance rate of the drafted tokens."""
    ids = torch.tensor([PROMPT]).repeat(ROWS, 1)
    out = model.generate(
        ids, max_new_tokens=STEPS, do_sample=True, seed=seed, eos_token_id=[], return_dict=True, **options
    )
    new = out.sequences[:, len(PROMPT) :]
    assert new.shape == (ROWS, STEPS)
    code = (new * torch.tensor([VOCAB**2, VOCAB, 1])).sum(1)
    return torch.bincount(code, minlength=VOCAB**STEPS).double(), out.acceptance_rate


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against ``probs``; cells expecting fewer than 5
    samples are pooled into one."""
    expected = probs.double() * counts.sum()
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = expected > 0
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2), stat / 2))


@pytest.mark.parametrize("processors", list(PROCESSORS))
def test_plain_sampling_passes_the_test(pair, processors):
    """The test's calibration: plain sampling itself passes at this threshold."""
    target, _ = pair
    options = PROCESSORS[processors]
    counts, _ = sample_counts(target, 0, **options)
    assert chi_square_p(counts, exact_distribution(target, options)) > P_MIN


@pytest.mark.parametrize("processors", list(PROCESSORS))
@pytest.mark.parametrize("k", [1, 3])
def test_speculative_sampling_matches_plain_sampling(pair, processors, k):
    target, draft = pair
    options = PROCESSORS[processors]
    counts, rate = sample_counts(target, 1, assistant_model=draft, num_assistant_tokens=k, **options)
    assert 0.2 < rate < 0.9  # both acceptances and rejections (with resampling) happen often
    assert chi_square_p(counts, exact_distribution(target, options)) > P_MIN


@pytest.mark.parametrize("processors", list(PROCESSORS))
def test_prompt_lookup_sampling_matches_plain_sampling(pair, processors):
    target, _ = pair
    options = PROCESSORS[processors]
    counts, rate = sample_counts(target, 2, prompt_lookup_num_tokens=3, **options)
    assert 0.05 < rate < 0.9
    assert chi_square_p(counts, exact_distribution(target, options)) > P_MIN


def test_a_wrong_acceptance_rule_fails(pair, monkeypatch):
    """min(1, q/p) instead of min(1, p/q): the test must see the difference."""
    target, draft = pair
    monkeypatch.setattr(
        acceptance, "accept_probability", lambda p, q: (q / p.clamp(min=1e-30)).clamp(max=1.0)
    )
    counts, _ = sample_counts(target, 1, assistant_model=draft, num_assistant_tokens=3)
    assert chi_square_p(counts, exact_distribution(target, {})) < 1e-12
