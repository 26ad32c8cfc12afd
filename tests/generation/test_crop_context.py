"""``crop_context=True``: generation past the context, each token conditioned on the last ``max_seq_len``
tokens (nanoGPT's sampler); equal to nanoGPT's loop, cached == uncached, batched and with beams."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.generation import GenerationError

CTX = 16


@pytest.fixture(scope="module", params=["gpt-tiny", "llama-tiny", "mistral-tiny"])
def model(request):
    """Learned positions (GPT-2), RoPE (Llama) and RoPE with a sliding window of 8 (Mistral, ring caches)."""
    torch.manual_seed(0)
    changes = {"sliding_window": 8} if request.param == "mistral-tiny" else {}
    changes["eos_token_id"] = None  # every run generates all its tokens
    return tformer.build(request.param, vocab_size=64, max_seq_len=CTX, **changes).eval()


@torch.no_grad()
def nanogpt_greedy(model, idx: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """nanoGPT's ``generate``, greedy: crop to the last block, forward, take the argmax, append."""
    for _ in range(new_tokens):
        logits = model(idx[:, -CTX:]).logits[:, -1]
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("prompt_len", [5, CTX, CTX + 7])
def test_greedy_equals_nanogpts_loop_cached_and_uncached(model, prompt_len):
    prompt = torch.randint(0, 64, (1, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    expected = nanogpt_greedy(model, prompt, 40)
    for use_cache in (True, False):
        out = model.generate(prompt, max_new_tokens=40, crop_context=True, use_cache=use_cache)
        assert torch.equal(out, expected), use_cache


def test_cached_equals_uncached_step_by_step_logits_batched_and_sampled(model):
    prompts = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompts)
    mask[1, :3] = 0  # row 1 is left padded
    runs = [
        model.generate(
            prompts,
            attention_mask=mask,
            max_new_tokens=30,
            crop_context=True,
            use_cache=use_cache,
            do_sample=True,
            seed=7,
            output_logits=True,
            return_dict=True,
        )
        for use_cache in (True, False)
    ]
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    assert runs[0].sequences.shape == (2, 36)
    for a, b in zip(runs[0].logits, runs[1].logits):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_beam_search_past_the_context_cached_equals_uncached(model):
    prompt = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(2))
    cached, uncached = (
        model.generate(prompt, max_new_tokens=12, num_beams=3, crop_context=True, use_cache=c)
        for c in (True, False)
    )
    assert torch.equal(cached, uncached) and cached.shape[1] == 22


def test_without_the_option_the_context_stays_a_limit_that_names_it():
    torch.manual_seed(0)
    gpt = tformer.build("gpt-tiny", vocab_size=64, max_seq_len=CTX).eval()
    with pytest.raises(GenerationError, match="exceeds the model's context of 16 tokens.*crop_context=True"):
        gpt.generate(torch.ones(1, 10, dtype=torch.long), max_new_tokens=7)
    with pytest.raises(GenerationError, match="longer than the model's context of 16.*crop_context=True"):
        gpt.generate(torch.ones(1, 17, dtype=torch.long), max_new_tokens=1)
    t5 = tformer.build("t5-tiny", vocab_size=64).eval()
    with pytest.raises(GenerationError, match="crop_context applies to decoder-only models"):
        t5.generate(torch.ones(1, 4, dtype=torch.long), crop_context=True)
