"""The rest of Hugging Face's ``generate`` options, each token-identical to Hugging Face's generate on tiny
random models (greedy, beam search and seeded sampling as each applies), the scores they return, the
defaults a model directory's generation_config.json sets, and contradictory settings refused in one line."""

from __future__ import annotations

import pytest
import torch

import tformer
from tests.generation.helpers import ENCODER_DECODER, PAD, hf_generate, padded_batch
from tests.generation.test_hf_parity import LENGTHS, pick_eos
from tformer.generation import GenerationError

transformers = pytest.importorskip("transformers")

GREEDY = dict(do_sample=False)
BEAM = dict(num_beams=3, num_return_sequences=2)
SAMPLE = dict(do_sample=True, num_return_sequences=2)


def compare(families, family: str, seed: int, mode: dict, **options) -> torch.Tensor:
    """Generate with ``options`` in ``mode`` on both sides (sampling from the same seed); return the ids."""
    hf, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=seed)
    shared = dict(max_new_tokens=10, **mode, **options)
    sampling = shared.get("do_sample", False)
    if sampling:
        torch.manual_seed(seed)
    # Hugging Face's top_k defaults to 50 when unset; 0 disables it, matching tformer's None
    no_top_k = {"top_k": 0} if sampling and "top_k" not in shared else {}
    ref = hf_generate(hf, ids, mask, family, **no_top_k, **shared)
    got = model.generate(
        ids, attention_mask=mask, pad_token_id=PAD[family], **shared, seed=seed if sampling else None
    )
    assert torch.equal(got, ref), (family, mode, options)
    return got


def new_tokens(out: torch.Tensor, family: str) -> torch.Tensor:
    return out[:, 1:] if family in ENCODER_DECODER else out[:, max(LENGTHS) :]


# ---- lengths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "bart"])
def test_min_new_tokens(families, family, mode):
    _, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=11)
    eos = pick_eos(model, ids, mask, step=1)  # row 0 would stop after two tokens
    out = compare(families, family, 11, mode, eos_token_id=eos, min_new_tokens=6)
    assert not bool((new_tokens(out, family)[:, :6] == eos).any())  # the rule did something


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_min_length_counts_the_prompt(families, family, mode):
    _, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=12)
    eos = pick_eos(model, ids, mask, step=1)
    start = 1 if family in ENCODER_DECODER else ids.shape[1]
    compare(families, family, 12, mode, eos_token_id=eos, min_length=start + 5)


@pytest.mark.parametrize("family", ["gpt2", "mistral", "t5", "bart"])
def test_max_length_counts_the_prompt(families, family):
    ids, _ = padded_batch(family, LENGTHS, seed=13)
    start = 1 if family in ENCODER_DECODER else ids.shape[1]
    hf, model = families[family]
    _, mask = padded_batch(family, LENGTHS, seed=13)
    ref = hf_generate(hf, ids, mask, family, max_length=start + 7, eos_token_id=None)
    got = model.generate(
        ids, attention_mask=mask, max_length=start + 7, eos_token_id=None, pad_token_id=PAD[family]
    )
    assert torch.equal(got, ref) and got.shape[1] == start + 7


def test_an_explicit_eos_token_id_none_turns_eos_off():
    """As in Hugging Face: ``eos_token_id=None`` passed to generate means no EOS, not the model's default
    (which applies only when the caller leaves the option out)."""
    from tformer.config import ModelConfig
    from tformer.generation.config import GenerationConfig

    model_config = ModelConfig(arch="decoder", vocab_size=8, d_model=8, n_layers=1, n_heads=2, eos_token_id=2)
    defaults = GenerationConfig(eos_token_id=2)
    for kwargs, expected in (({"eos_token_id": None}, None), ({}, 2), ({"eos_token_id": 5}, 5)):
        cfg = GenerationConfig.from_kwargs(kwargs, defaults)
        cfg.resolve_special_tokens(model_config, encoder_decoder=False)
        assert cfg.eos_token_id == expected, kwargs
    cfg = GenerationConfig.from_kwargs({}, None)  # no defaults: the model config's
    cfg.resolve_special_tokens(model_config, encoder_decoder=False)
    assert cfg.eos_token_id == 2


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_forced_eos_token_id_ends_at_max_length(families, family, mode):
    out = compare(families, family, 14, mode, forced_eos_token_id=9, eos_token_id=9)
    assert bool((out[:, -1] == 9).all())


# ---- token rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [GREEDY, BEAM, SAMPLE], ids=["greedy", "beam", "sample"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_no_repeat_ngram_size(families, family, mode, size):
    out = compare(families, family, 15, mode, no_repeat_ngram_size=size)
    stop = {families[family][1].config.eos_token_id, PAD[family]}
    for row in new_tokens(out, family).tolist():
        row = row[: next((i for i, t in enumerate(row) if t in stop), len(row))]  # up to EOS / padding
        grams = [tuple(row[i : i + size]) for i in range(len(row) - size + 1)]
        assert len(set(grams)) == len(grams)  # the generated n-grams never repeat


@pytest.mark.parametrize("mode", [GREEDY, BEAM, SAMPLE], ids=["greedy", "beam", "sample"])
@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_bad_words_ids(families, family, mode):
    hf, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=16)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=[])
    first, second = (int(t) for t in new_tokens(plain, family)[0, :2])
    # a single token, a two-token sequence, and the EOS id alone (which Hugging Face ignores)
    bad = [[first], [second, 17], [5]]
    out = compare(families, family, 16, mode, bad_words_ids=bad, eos_token_id=5)
    assert not bool((new_tokens(out, family) == first).any())


@pytest.mark.parametrize("mode", [GREEDY, SAMPLE], ids=["greedy", "sample"])
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_suppress_tokens(families, family, mode):
    out = compare(families, family, 17, mode, suppress_tokens=list(range(10, 60)))
    generated = new_tokens(out, family)
    assert not bool(((generated >= 10) & (generated < 60)).any())


@pytest.mark.parametrize("family", ["gpt2", "mistral", "t5", "bart"])
def test_begin_suppress_tokens(families, family):
    hf, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=18)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=3, eos_token_id=[])
    firsts = sorted({int(t) for t in new_tokens(plain, family)[:, 0]})
    out = compare(families, family, 18, GREEDY, begin_suppress_tokens=firsts, eos_token_id=[])
    assert not set(new_tokens(out, family)[:, 0].tolist()) & set(firsts)


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
@pytest.mark.parametrize("family", ["t5", "bart"])
def test_forced_bos_token_id(families, family, mode):
    out = compare(families, family, 19, mode, forced_bos_token_id=42, begin_suppress_tokens=[7])
    assert bool((out[:, 1] == 42).all())


def test_forced_bos_applies_after_a_one_token_prompt(families):
    """Hugging Face forces the token whenever the sequence is one token long: a decoder prompt of one."""
    hf, model = families["gpt2"]
    ids = torch.tensor([[11], [12]])
    mask = torch.ones_like(ids)
    ref = hf_generate(hf, ids, mask, "gpt2", max_new_tokens=5, forced_bos_token_id=33)
    got = model.generate(ids, attention_mask=mask, max_new_tokens=5, forced_bos_token_id=33, pad_token_id=0)
    assert torch.equal(got, ref) and bool((got[:, 1] == 33).all())


# ---- sampling filters --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [dict(min_p=0.1), dict(min_p=0.3, temperature=1.5), dict(typical_p=0.6), dict(typical_p=0.5, top_k=20)],
)
@pytest.mark.parametrize("family", ["gpt2", "llama", "bart"])
def test_min_p_and_typical_p_sampling(families, family, settings):
    filtered = compare(families, family, 20, SAMPLE, eos_token_id=7, **settings)
    others = {k: v for k, v in settings.items() if k not in ("min_p", "typical_p")}
    assert not torch.equal(filtered, compare(families, family, 20, SAMPLE, eos_token_id=7, **others))


def test_min_p_and_typical_p_equal_hf_processors():
    lp = pytest.importorskip("transformers.generation.logits_process")
    from tformer.generation.logits_processing import apply_min_p, apply_typical_p

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 50, generator=g) * 3
    scores[0] = 0.5  # a flat row
    scores[1, :10] = float("-inf")  # filtered already
    for p, keep in ((0.05, 1), (0.3, 1), (0.9, 3)):
        torch.testing.assert_close(
            apply_min_p(scores, p, keep),
            lp.MinPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores.clone()),
        )
    for mass, keep in ((0.2, 1), (0.7, 1), (0.95, 4)):
        ref = lp.TypicalLogitsWarper(mass, min_tokens_to_keep=keep)(None, scores.clone())
        torch.testing.assert_close(apply_typical_p(scores, mass, keep), ref)


# ---- what generate returns ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [GREEDY, BEAM, SAMPLE], ids=["greedy", "beam", "sample"])
@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_return_dict_in_generate_with_scores_and_logits(families, family, mode):
    hf, model = families[family]
    ids, mask = padded_batch(family, LENGTHS, seed=21)
    kw = dict(max_new_tokens=6, eos_token_id=4, repetition_penalty=1.3, no_repeat_ngram_size=2, **mode)
    kw |= dict(return_dict_in_generate=True, output_scores=True, output_logits=True)
    sampling = mode.get("do_sample", False)
    torch.manual_seed(21)
    ref = hf_generate(hf, ids, mask, family, **({"top_k": 0} if sampling else {}), **kw)
    got = model.generate(
        ids, attention_mask=mask, pad_token_id=PAD[family], seed=21 if sampling else None, **kw
    )
    assert isinstance(got, tformer.generation.GenerateOutput)
    assert torch.equal(got.sequences, ref.sequences)
    assert len(got.scores) == len(ref.scores) == len(got.logits) == len(ref.logits)
    for ours, theirs in zip(got.scores + got.logits, ref.scores + ref.logits):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    if "num_beams" in mode:
        torch.testing.assert_close(got.sequences_scores, ref.sequences_scores, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.beam_indices, ref.beam_indices)


def test_output_scores_need_return_dict(families):
    _, model = families["llama"]
    ids, mask = padded_batch("llama", LENGTHS, seed=22)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=3, output_scores=True)
    assert isinstance(out, torch.Tensor)  # as in Hugging Face: scores come only with a dict


# ---- generation_config.json --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bart_with_defaults(families, tmp_path_factory):
    """The BART of the families, saved with generation defaults that change its outputs."""
    hf, _ = families["bart"]
    d = tmp_path_factory.mktemp("bart-generation-config")
    hf.generation_config.forced_bos_token_id = 42
    hf.generation_config.no_repeat_ngram_size = 2
    hf.generation_config.max_length = 9
    try:
        hf.save_pretrained(d)
    finally:
        hf.generation_config.forced_bos_token_id = None
        hf.generation_config.no_repeat_ngram_size = None
        hf.generation_config.max_length = None
    return transformers.BartForConditionalGeneration.from_pretrained(d).eval(), tformer.from_pretrained(d)


def test_generation_config_json_defaults_apply_as_in_hf(bart_with_defaults):
    hf, model = bart_with_defaults
    assert model.generation_config.forced_bos_token_id == 42 and model.generation_config.max_length == 9
    ids, mask = padded_batch("bart", LENGTHS, seed=23)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask)  # no options: the file's defaults decide
    got = model.generate(ids, attention_mask=mask)
    assert torch.equal(got, ref) and bool((got[:, 1] == 42).all()) and got.shape[1] == 9
    # the caller's options win over the file's, as in Hugging Face
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, forced_bos_token_id=None, max_new_tokens=4)
    got = model.generate(ids, attention_mask=mask, forced_bos_token_id=None, max_new_tokens=4)
    assert torch.equal(got, ref) and not bool((got[:, 1] == 42).all())


def test_unimplemented_file_options_are_logged_and_ignored(tmp_path, caplog):
    import json

    from tformer.generation.hf_config import read_generation_config

    doc = {"num_beams": 2, "num_beam_groups": 1, "diversity_penalty": 0.5, "transformers_version": "5.24.0"}
    (tmp_path / "generation_config.json").write_text(json.dumps(doc))
    cfg = read_generation_config(tmp_path)
    assert cfg.num_beams == 2
    assert "diversity_penalty=0.5, which tformer does not implement" in caplog.text
    assert "num_beam_groups" not in caplog.text  # set to its "off" value: nothing to say


# ---- contradictions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (dict(min_new_tokens=64, max_new_tokens=32), "min_new_tokens=64 is more than max_new_tokens=32"),
        (dict(min_length=20, max_length=10), "min_length=20 is more than max_length=10"),
        (dict(max_length=20, max_new_tokens=5), "pass max_new_tokens or max_length, not both"),
        (dict(max_length=3), "max_length=3 leaves no room to generate: the input already has 9 tokens"),
        (dict(min_length=30, max_new_tokens=5), "min_length=30 is more than max_length=14 for this input"),
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size must be an integer >= 0"),
        (dict(bad_words_ids=[[]]), "bad_words_ids must be a non-empty list of non-empty lists"),
        (dict(bad_words_ids=[[10_000]]), r"bad_words_ids holds ids \[10000\] past the vocabulary of 96"),
        (dict(suppress_tokens="12"), "suppress_tokens must be a token id or a list of token ids"),
        (dict(do_sample=True, min_p=1.5), r"min_p must be in \[0, 1\]"),
        (dict(do_sample=True, typical_p=0.0), r"typical_p must be in \(0, 1\]"),
    ],
)
def test_contradictory_or_invalid_options_fail_in_one_line(families, options, message):
    _, model = families["gpt2"]
    ids, mask = padded_batch("gpt2", LENGTHS, seed=24)
    with pytest.raises(GenerationError, match=message) as err:
        model.generate(ids, attention_mask=mask, **options)
    assert "\n" not in str(err.value)
