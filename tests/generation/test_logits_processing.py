"""Temperature, top-k, top-p and repetition penalty equal Hugging Face's LogitsProcessor classes."""

from __future__ import annotations

import pytest
import torch

from tformer.generation import GenerationConfig
from tformer.generation.logits_processing import (
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    process_scores,
)

lp = pytest.importorskip("transformers.generation.logits_process")
V = 50


def scores_with_ties(seed: int = 0, batch: int = 4) -> torch.Tensor:
    """Random logits with repeated values, so tie handling at the top-k / top-p boundary is exercised."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, V, generator=g) * 3
    s[:, 10:20] = s[:, :10]  # every one of the first ten values appears twice
    s[0, :] = 0.5  # a flat row
    return s


def history(seed: int = 0, batch: int = 4, length: int = 12) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_same(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))  # the same tokens filtered out
    finite = ~torch.isinf(ref)
    torch.testing.assert_close(ours[finite], ref[finite], rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature(t):
    s = scores_with_ties()
    assert_same(apply_temperature(s, t), lp.TemperatureLogitsWarper(t)(None, s.clone()))


@pytest.mark.parametrize("k,keep", [(1, 1), (5, 1), (12, 1), (3, 4), (V + 10, 1)])
def test_top_k(k, keep):
    s = scores_with_ties(1)
    ref = lp.TopKLogitsWarper(k, min_tokens_to_keep=keep)(None, s.clone())
    assert_same(apply_top_k(s, k, keep), ref)


@pytest.mark.parametrize("p,keep", [(0.05, 1), (0.5, 1), (0.9, 1), (1.0, 1), (0.3, 3)])
def test_top_p(p, keep):
    s = scores_with_ties(2)
    ref = lp.TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, s.clone())
    assert_same(apply_top_p(s, p, keep), ref)


@pytest.mark.parametrize("penalty", [0.5, 1.3, 3.0])
def test_repetition_penalty(penalty):
    s, ids = scores_with_ties(3), history(3)
    ref = lp.RepetitionPenaltyLogitsProcessor(penalty)(ids, s.clone())
    assert_same(apply_repetition_penalty(s, ids, penalty), ref)


def test_repetition_penalty_skips_left_padding():
    s, ids = scores_with_ties(4), history(4)
    skip = torch.tensor([0, 3, 7, 12])
    ref = lp.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=skip)(ids, s.clone())
    assert_same(apply_repetition_penalty(s, ids, 1.5, skip), ref)
    # and the skipped ids really are skipped: a token only in row 3's ignored prefix is untouched
    assert torch.equal(apply_repetition_penalty(s, ids, 1.5, skip)[3], s[3])


CHAINS = [
    dict(do_sample=True, temperature=0.7, top_k=8, top_p=0.85, repetition_penalty=1.2),
    dict(do_sample=True, temperature=1.6, top_p=0.5),
    dict(do_sample=True, top_k=3),
    dict(do_sample=False, repetition_penalty=2.0, temperature=0.1),  # greedy ignores the warpers
]


@pytest.mark.parametrize("opts", CHAINS)
def test_chain_and_distribution_match_hf(opts):
    """The full chain in Hugging Face's order gives the same next-token distribution to 1e-6."""
    s, ids = scores_with_ties(5), history(5)
    chain = lp.LogitsProcessorList()
    if opts.get("repetition_penalty", 1.0) != 1.0:
        chain.append(lp.RepetitionPenaltyLogitsProcessor(opts["repetition_penalty"]))
    if opts["do_sample"]:
        if opts.get("temperature", 1.0) != 1.0:
            chain.append(lp.TemperatureLogitsWarper(opts["temperature"]))
        if "top_k" in opts:
            chain.append(lp.TopKLogitsWarper(opts["top_k"]))
        if "top_p" in opts:
            chain.append(lp.TopPLogitsWarper(opts["top_p"]))
    ref = chain(ids, s.clone())
    ours = process_scores(s, ids, GenerationConfig(**opts))
    assert_same(ours, ref)
    torch.testing.assert_close(torch.softmax(ours, -1), torch.softmax(ref, -1), rtol=0, atol=1e-6)


def test_sampled_frequencies_follow_the_filtered_distribution():
    """Draws land only on kept tokens, with frequencies near their probabilities."""
    from tformer.generation.sampling import sample

    s = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).expand(20000, 6)
    filtered = process_scores(
        s, torch.zeros(20000, 0, dtype=torch.long), GenerationConfig(do_sample=True, top_k=4, top_p=0.9)
    )
    draws = sample(filtered, torch.Generator().manual_seed(0))
    probs = torch.softmax(filtered[0], -1)
    freq = torch.bincount(draws, minlength=6).float() / draws.numel()
    assert freq[probs == 0].sum() == 0
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.015)
