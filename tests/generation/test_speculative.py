"""Speculative and prompt lookup decoding, greedy: token for token plain greedy decoding (fp32), for GPT-2,
Llama (GQA) and Mistral (sliding window shorter than prompt + output) pairs, left-padded batches, EOS and
stop strings inside accepted blocks, K = 1..8, both schedules; after every round both caches hold what a
fresh prefill of the same tokens holds; batched == single; one-line errors."""

from __future__ import annotations

import copy

import pytest
import torch

import tformer
from tests.generation.test_protocols import Wrapped  # a CausalLM without rewind_caches
from tformer.generation import GenerationConfig, GenerationError
from tformer.generation.speculative import SpeculativeConfig, SpeculativeDecoder
from tformer.nn.kv_cache import KVCache, RollingKVCache

VOCAB, PAD, WINDOW, NEW = 96, 0, 4, 24
FAMILIES = {
    "gpt2": ("gpt-tiny", {}),
    "llama": ("llama-tiny", {}),  # grouped-query: 4 heads, 2 key/value heads
    "mistral": ("mistral-tiny", {"sliding_window": WINDOW}),
}


def perturbed(model: torch.nn.Module, std: float, seed: int = 1) -> torch.nn.Module:
    """A copy with noise on every weight: a draft that agrees with the target often, not always."""
    g = torch.Generator().manual_seed(seed)
    draft = copy.deepcopy(model)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return draft


@pytest.fixture(scope="module")
def pairs():
    """family -> (target, {draft name: draft}); large init_std: decisive logits, no near-ties in argmax."""
    torch.manual_seed(0)
    out = {}
    for family, (preset, extra) in FAMILIES.items():
        cfg = tformer.get_preset(preset, vocab_size=VOCAB, init_std=0.5, pad_token_id=PAD, **extra)
        target = tformer.build(cfg).eval()
        small = cfg.replace(d_model=32, n_heads=2, n_kv_heads=None if family == "gpt2" else 1, n_layers=1)
        drafts = {
            "close": perturbed(target, 0.005),  # accepts most tokens, rows differ
            "small": tformer.build(
                small.replace(head_dim=None, d_ff=64)
            ).eval(),  # another size; rarely agrees
            "same": copy.deepcopy(target),  # accepts everything
        }
        out[family] = (target, drafts)
    return out


def batch(lengths: list[int], seed: int = 0, repeat: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts; ``repeat``: each prompt says the same phrase twice (prompt lookup finds it)."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), T), generator=g)
    if repeat:
        ids[:, T // 2 :] = ids[:, : T - T // 2]
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n :] = 1
    return ids.masked_fill(mask == 0, PAD), mask


def plain(model, ids, mask, **kw) -> torch.Tensor:
    return model.generate(ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=PAD, **kw)


def speculative(model, ids, mask, **kw):
    return model.generate(
        ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=PAD, return_dict=True, **kw
    )


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("schedule", ["constant", "heuristic"])
def test_greedy_with_a_draft_model_equals_plain_greedy(pairs, family, schedule):
    target, drafts = pairs[family]
    ids, mask = batch([9, 5, 7], seed=1)
    expected = plain(target, ids, mask, eos_token_id=[])
    for name, ks in (("close", range(1, 9)), ("small", (2, 7))):  # "small" rarely agrees: slow, fewer K
        for k in ks:
            out = speculative(
                target,
                ids,
                mask,
                eos_token_id=[],
                assistant_model=drafts[name],
                num_assistant_tokens=k,
                num_assistant_tokens_schedule=schedule,
            )
            assert torch.equal(out.sequences, expected), (name, k)
            assert int(out.num_accepted.sum()) <= int(out.num_drafted.sum())
    assert out.num_drafted.shape == (3,) and 0.0 <= out.acceptance_rate <= 1.0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rows_accept_different_numbers_of_tokens(pairs, family):
    target, drafts = pairs[family]
    ids, mask = batch([9, 5, 7], seed=1)
    out = speculative(
        target, ids, mask, eos_token_id=[], assistant_model=drafts["close"], num_assistant_tokens=4
    )
    assert len(set(out.num_accepted.tolist())) > 1  # the realignment of rows is exercised
    assert 0.3 < out.acceptance_rate < 1.0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_prompt_lookup_greedy_equals_plain_greedy(pairs, family):
    target, _ = pairs[family]
    ids, mask = batch([12, 7, 10], seed=2, repeat=True)
    expected = plain(target, ids, mask, eos_token_id=[])
    accepted = 0
    for k, ngram in [(k, 2) for k in range(1, 9)] + [(4, 1), (4, 3)]:
        out = speculative(
            target, ids, mask, eos_token_id=[], prompt_lookup_num_tokens=k, max_matching_ngram_size=ngram
        )
        assert torch.equal(out.sequences, expected), (k, ngram)
        accepted += int(out.num_accepted.sum())
    assert accepted > 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batched_equals_each_row_alone(pairs, family):
    target, drafts = pairs[family]
    ids, mask = batch([9, 4, 7], seed=3)
    for options in (
        {"assistant_model": drafts["close"], "num_assistant_tokens": 3},
        {"prompt_lookup_num_tokens": 3},
    ):
        together = speculative(target, ids, mask, eos_token_id=[], **options).sequences
        for i in range(3):
            n = int(mask[i].sum())
            alone = speculative(target, ids[i : i + 1, -n:], None, eos_token_id=[], **options).sequences
            assert torch.equal(alone[0], together[i, ids.shape[1] - n :])


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("k", [3, 8])
def test_eos_inside_an_accepted_block_stops_the_row(pairs, family, k):
    target, drafts = pairs[family]
    ids, mask = batch([9, 5, 7], seed=4)
    free = plain(target, ids, mask, eos_token_id=[])
    T = ids.shape[1]
    eos = int(free[0, T + 5])  # row 0 stops at its 6th new token (other rows maybe too, or later)
    expected = plain(target, ids, mask, eos_token_id=eos)
    out = speculative(
        target, ids, mask, eos_token_id=eos, assistant_model=drafts["same"], num_assistant_tokens=k
    )
    assert torch.equal(out.sequences, expected)
    stop_at = int((free[0, T:] == eos).nonzero()[0])
    assert (out.sequences[0, T + stop_at + 1 :] == PAD).all()
    assert int(out.num_accepted[0]) >= stop_at  # every token up to the EOS came from accepted drafts


class Letters:
    """A tokenizer's ``decode`` for stop strings: token i is the letter chr(65 + i % 26)."""

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(chr(65 + i % 26) for i in ids)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_stop_string_inside_an_accepted_block(pairs, family):
    target, drafts = pairs[family]
    ids, mask = batch([9, 5, 7], seed=5)
    T = ids.shape[1]
    free = plain(target, ids, mask, eos_token_id=[])
    stop = Letters().decode(free[1, T + 4 : T + 7].tolist())  # completed by row 1's 7th new token
    kw = dict(eos_token_id=[], stop_strings=stop, tokenizer=Letters())
    expected = plain(target, ids, mask, **kw)
    for options in (
        {"assistant_model": drafts["same"], "num_assistant_tokens": 6},
        {"prompt_lookup_num_tokens": 6},
    ):
        out = speculative(target, ids, mask, **options, **kw)
        assert torch.equal(out.sequences, expected)
    assert (expected[1, T + 7 :] == PAD).all()


def test_streaming_yields_columns_equal_to_the_output(pairs):
    target, drafts = pairs["llama"]
    ids, mask = batch([9, 5, 7], seed=6)
    stream = tformer.generation.stream_generate(
        target, ids, mask, max_new_tokens=NEW, eos_token_id=[], assistant_model=drafts["close"]
    )
    columns = list(stream)
    assert len(columns) == NEW and torch.equal(
        torch.stack(columns, 1), stream.output.sequences[:, ids.shape[1] :]
    )


def visible_entries(cache: KVCache, start: torch.Tensor, end: int, window: int | None):
    """Per row, the keys/values a query at column ``end`` may attend to: (positions, k, v) per row."""
    if isinstance(cache, RollingKVCache):
        positions = cache.positions
    else:
        positions = torch.arange(cache.k.shape[2])
    low = end - window + 1 if window is not None else 0
    out = []
    for i in range(cache.k.shape[0]):
        sel = (positions >= max(int(start[i]), low)) & (positions < end) & (positions >= 0)
        order = positions[sel].argsort()
        out.append((positions[sel][order], cache.k[i][:, sel][:, order], cache.v[i][:, sel][:, order]))
    return out


def assert_cache_matches_prefill(model, rows, end: int, slack: int) -> None:
    """The model's caches against a fresh prefill of the same tokens (columns 0 .. end - 1)."""
    fresh = copy.deepcopy(model)
    B, C = rows.history.shape
    fresh.setup_caches(B, C, window_slack=slack)
    layout = rows.layout
    fresh(rows.layout_tokens(0, end), layout.mask(end), layout.positions(0, end), layout.slots(0, end))
    ours = [m for m in model.modules() if isinstance(m, KVCache)]
    ref = [m for m in fresh.modules() if isinstance(m, KVCache)]
    window = model.config.sliding_window
    active = rows.active.nonzero().flatten().tolist()
    for a, b in zip(ours, ref, strict=True):
        assert type(a) is type(b)
        for i in active:
            pa, ka, va = visible_entries(a, layout.start, end, window)[i]
            pb, kb, vb = visible_entries(b, layout.start, end, window)[i]
            assert torch.equal(pa, pb)
            scale = max(1.0, float(kb.abs().max()), float(vb.abs().max()))  # chunked vs prefill rounding
            torch.testing.assert_close(ka, kb, atol=1e-5 * scale, rtol=0)
            torch.testing.assert_close(va, vb, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("schedule", ["constant", "heuristic"])
def test_caches_after_every_round_equal_a_fresh_prefill(pairs, family, schedule):
    target, drafts = pairs[family]
    ids, mask = batch([9, 5, 7], seed=7)
    cfg = GenerationConfig(max_new_tokens=NEW, eos_token_id=[], pad_token_id=PAD)
    spec = SpeculativeConfig(
        assistant_model=drafts["close"], num_assistant_tokens=3, num_assistant_tokens_schedule=schedule
    )
    decoder = SpeculativeDecoder(target, ids, mask, cfg, spec)
    rolling = 0
    with torch.inference_mode():
        decoder.start()
        try:
            while bool(decoder.rows.active.any()):
                decoder.round()
                if not bool(decoder.rows.active.any()):
                    break
                slack = decoder.max_k + 2
                assert_cache_matches_prefill(target, decoder.rows, decoder.rows.layout.end - 1, slack)
                assert_cache_matches_prefill(decoder.draft_model, decoder.rows, decoder.drafter.end, slack)
                rolling += any(isinstance(m, RollingKVCache) for m in target.modules())
        finally:
            decoder.close()
    assert (rolling > 0) == (family == "mistral")  # the ring buffers were exercised past the window


def test_sampling_runs_batched_with_every_processor(pairs):
    target, drafts = pairs["mistral"]
    ids, mask = batch([9, 5, 7], seed=8)
    kw = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=3)
    a = speculative(target, ids, mask, assistant_model=drafts["close"], num_assistant_tokens=5, **kw)
    b = speculative(target, ids, mask, assistant_model=drafts["close"], num_assistant_tokens=5, **kw)
    assert torch.equal(a.sequences, b.sequences)  # a seed makes it reproducible
    assert a.sequences.shape[1] <= ids.shape[1] + NEW and a.acceptance_rate > 0.3


# ---- bad input ------------------------------------------------------------------------------------------
def test_bad_input_gets_one_line_errors(pairs):
    target, drafts = pairs["llama"]
    ids, mask = batch([6, 4], seed=9)
    other_vocab = tformer.build(tformer.get_preset("llama-tiny", vocab_size=VOCAB + 4))
    short = tformer.build(tformer.get_preset("llama-tiny", vocab_size=VOCAB, max_seq_len=16))
    seq2seq = tformer.build(tformer.get_preset("t5-tiny", vocab_size=VOCAB))
    cases = [
        (target, {"assistant_model": other_vocab}, rf"vocab_size {VOCAB + 4} but the model has {VOCAB}"),
        (
            target,
            {"assistant_model": drafts["close"], "num_assistant_tokens": 0},
            "num_assistant_tokens must be",
        ),
        (target, {"prompt_lookup_num_tokens": 0}, "prompt_lookup_num_tokens must be"),
        (target, {"assistant_model": drafts["close"], "num_beams": 2}, "not supported with beam search"),
        (seq2seq, {"assistant_model": drafts["close"]}, "not supported for encoder_decoder models"),
        (target, {"assistant_model": short}, r"context of 16 tokens is shorter than this request \(prompt 6"),
        (target, {"assistant_model": drafts["close"], "prompt_lookup_num_tokens": 2}, "not both"),
        (target, {"num_assistant_tokens": 3}, "need assistant_model"),
        (
            target,
            {"assistant_model": drafts["close"], "num_assistant_tokens_schedule": "fast"},
            "one of constant",
        ),
        (target, {"assistant_model": drafts["close"], "use_cache": False}, "needs the key/value caches"),
        (target, {"assistant_model": target}, "another model than the one generating"),
        (Wrapped(target), {"prompt_lookup_num_tokens": 3}, "caches can be rewound"),
        (target, {"prompt_lookup_num_tokens": 3, "min_new_tokens": 2}, "min_new_tokens is not supported"),
        (
            target,
            {"assistant_model": drafts["close"], "no_repeat_ngram_size": 2},
            "no_repeat_ngram_size is not",
        ),
    ]
    for model, options, message in cases:
        with pytest.raises(GenerationError, match=message) as info:
            tformer.generation.generate(model, ids, attention_mask=mask, max_new_tokens=NEW, **options)
        assert "\n" not in str(info.value)
    performer = tformer.build(tformer.get_preset("llama-tiny", vocab_size=VOCAB), attention_kind="performer")
    with pytest.raises(GenerationError, match="not supported with PerformerState caches"):
        performer.generate(ids[:1, -4:], max_new_tokens=4, prompt_lookup_num_tokens=2)
    right_padded = mask.flip(1)
    with pytest.raises(GenerationError, match="needs left padding"):
        target.generate(ids, attention_mask=right_padded, max_new_tokens=4, prompt_lookup_num_tokens=2)
