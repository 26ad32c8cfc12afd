"""Beam search against exhaustive enumeration: with enough beams to keep every live prefix, it must
return exactly the best hypotheses by sum(log p) / length ** length_penalty."""

from __future__ import annotations

import pytest
import torch

import tformer

V, EOS, NEW = 5, 0, 3  # vocabulary, end token, max new tokens: 1 + 4 + 16 + 64 = 85 hypotheses


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = tformer.build(
        tformer.ModelConfig(vocab_size=V, d_model=16, n_layers=2, n_heads=2, max_seq_len=16)
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)  # decisive, varied next-token distributions
    return model.eval()


def brute_force(model, prompt: list[int], length_penalty: float) -> list[tuple[float, list[int]]]:
    """Every hypothesis (ends with EOS or reaches NEW tokens), best first, with its beam-search score."""
    hyps: list[tuple[float, list[int]]] = []

    def extend(seq: list[int], logp: float) -> None:
        if seq and (seq[-1] == EOS or len(seq) == NEW):
            hyps.append((logp / len(seq) ** length_penalty, seq))
            return
        with torch.no_grad():
            logits = model(torch.tensor([prompt + seq])).logits[0, -1]
        logprobs = torch.log_softmax(logits.float(), -1)
        for t in range(V):
            extend(seq + [t], logp + float(logprobs[t]))

    extend([], 0.0)
    return sorted(hyps, key=lambda h: -h[0])


@pytest.mark.parametrize("early_stopping", [False, "never"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_finds_the_exhaustive_best(tiny, length_penalty, early_stopping):
    prompts = [[3, 1, 4], [2, 2, 1]]
    n_return = 4
    out = tiny.generate(
        torch.tensor(prompts),
        max_new_tokens=NEW,
        num_beams=V * V,
        num_return_sequences=n_return,
        eos_token_id=EOS,
        pad_token_id=EOS,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        return_dict=True,
    )
    for b, prompt in enumerate(prompts):
        best = brute_force(tiny, prompt, length_penalty)[:n_return]
        for r, (score, seq) in enumerate(best):
            row = out.sequences[b * n_return + r]
            assert row[: len(prompt)].tolist() == prompt
            assert row[len(prompt) : len(prompt) + len(seq)].tolist() == seq
            assert (row[len(prompt) + len(seq) :] == EOS).all()  # padding after a finished hypothesis
            assert abs(float(out.sequences_scores[b * n_return + r]) - score) < 1e-4


def test_one_beam_is_greedy(tiny):
    ids = torch.tensor([[3, 1, 4]])
    greedy = tiny.generate(ids, max_new_tokens=6, eos_token_id=[])
    beam = tiny.generate(ids, max_new_tokens=6, num_beams=1, eos_token_id=[])
    assert torch.equal(greedy, beam)
    # greedy is the step-by-step argmax of the full forward
    with torch.no_grad():
        seq = ids
        for _ in range(6):
            seq = torch.cat([seq, tiny(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, seq)
