"""KV cache: cached decoding equals full recomputation at every step, for every family and past the
sliding window; buffers are preallocated, written in place and sized by n_kv_heads."""

from __future__ import annotations

import pytest
import torch

from tests.generation.helpers import FAMILIES, PAD, WINDOW, hf_generate, padded_batch
from tformer.generation import stream_generate
from tformer.nn.kv_cache import KVCache, RollingKVCache

STEPS = 14  # with prompts of 9 tokens, well past Mistral's window of 4


def step_logits(model, ids, mask, use_cache: bool, **kw) -> torch.Tensor:
    out = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=STEPS,
        eos_token_id=[],
        output_logits=True,
        return_dict=True,
        use_cache=use_cache,
        **kw,
    )
    return torch.stack(out.logits, dim=1)  # (B, steps, V)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cached_logits_equal_uncached_at_every_step(families, family):
    _, model = families[family]
    ids, mask = padded_batch(family, [9, 4, 6], seed=11)
    cached, full = step_logits(model, ids, mask, True), step_logits(model, ids, mask, False)
    assert cached.shape[1] == STEPS
    assert (cached - full).abs().max() <= 1e-5


@pytest.mark.parametrize("family", list(FAMILIES))
def test_step_logits_match_hf(families, family):
    hf, model = families[family]
    ids, mask = padded_batch(family, [9, 4, 6], seed=12)
    ref = hf_generate(
        hf,
        ids,
        mask,
        family,
        max_new_tokens=STEPS,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
    )
    ref = torch.stack(ref.logits, dim=1)
    ours = step_logits(model, ids, mask, True)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_sliding_window_model_uses_a_ring_buffer_of_the_window(families):
    _, model = families["mistral"]
    model.setup_caches(2, 9 + STEPS)
    try:
        caches = [m for m in model.modules() if isinstance(m, KVCache)]
        assert caches and all(isinstance(c, RollingKVCache) for c in caches)
        assert all(c.k.shape == (2, 1, WINDOW, model.config.head_dim) for c in caches)  # MQA: one kv head
    finally:
        model.clear_caches()


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral", "t5"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_nbytes_formula(families, family, dtype):
    _, model = families[family]
    cfg = model.config
    batch, tokens = 3, 40
    model.setup_caches(batch, tokens, dtype=dtype)
    try:
        slots = min(tokens, cfg.sliding_window or tokens)
        layers = cfg.n_decoder_layers if cfg.arch == "encoder_decoder" else cfg.n_layers
        bytes_per = torch.finfo(dtype).bits // 8
        expected = batch * layers * 2 * cfg.n_kv_heads * cfg.head_dim * slots * bytes_per
        assert model.cache_nbytes() == expected
    finally:
        model.clear_caches()


def test_cache_buffers_are_written_in_place(families):
    """The same storage serves every step: nothing is reallocated or concatenated."""
    _, model = families["llama"]
    ids, mask = padded_batch("llama", [7, 5], seed=13)
    steps = stream_generate(model, ids, mask, max_new_tokens=8, eos_token_id=[])
    next(steps)
    caches = [m for m in model.modules() if isinstance(m, KVCache)]
    assert caches[0].k.shape[1] == 2  # GQA: 2 kv heads for 4 query heads
    pointers = [(c.k.data_ptr(), c.v.data_ptr()) for c in caches]
    before = caches[0].k.clone()
    next(steps)
    assert [(c.k.data_ptr(), c.v.data_ptr()) for c in caches] == pointers
    assert not torch.equal(caches[0].k, before)  # the new position was written
    list(steps)
    assert model.decoder_stack().caching is False  # caches freed after generation


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_cross_attention_keys_values_computed_once(families, family):
    _, model = families[family]
    calls = []
    hooks = [
        layer.cross_attn.kv_proj.register_forward_hook(lambda *a: calls.append(1))
        for layer in model.decoder_stack().layers
    ]
    try:
        ids, mask = padded_batch(family, [6, 4], seed=14)
        model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=[])
        assert len(calls) == len(hooks)  # once per layer for the whole generation
        calls.clear()
        model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=[], use_cache=False)
        assert len(calls) == 6 * len(hooks)  # the reference path recomputes them every step
    finally:
        for h in hooks:
            h.remove()


def test_plain_forward_works_after_generate(families):
    _, model = families["gpt2"]
    ids, mask = padded_batch("gpt2", [6, 6], seed=15)
    model.generate(ids, attention_mask=mask, max_new_tokens=3, pad_token_id=PAD["gpt2"])
    with torch.no_grad():
        assert model(ids).logits.shape == (2, 6, model.config.vocab_size)


@pytest.mark.parametrize("family", ["llama", "mistral", "bart"])
def test_cache_nbytes_agrees_with_tformer_inspect(families, family):
    from tformer.inspect import inspect_config

    _, model = families[family]
    model.setup_caches(2, 48, dtype=torch.bfloat16)
    try:
        report = inspect_config(model.config, seq_len=48, dtype="bfloat16", batch_size=2)
        assert model.cache_nbytes() == report.kv_bytes_full
    finally:
        model.clear_caches()
