"""Encoder-decoder parity with Hugging Face: T5 v1.0 (relu, tied), T5 v1.1 (gated-gelu, untied head,
d_kv != d_model / n_heads) and BART (post-LN, offset positions, final_logits_bias)."""

from __future__ import annotations

import json

import pytest
import torch

import tformer
from tests.parity.helpers import IMPLS, assert_close_scaled, load_families, right_padded_batch
from tformer.training.losses import token_cross_entropy

transformers = pytest.importorskip("transformers")

VOCAB = 96
PAD = {"t5_v1_0": 0, "t5_v1_1": 0, "bart": 1}


def t5_v1_0() -> torch.nn.Module:
    """T5 v1.0: relu feed-forward, tied and rescaled LM head."""
    cfg = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return transformers.T5ForConditionalGeneration(cfg)


def t5_v1_1() -> torch.nn.Module:
    """T5 v1.1: gated-gelu, its own LM head, d_kv * n_heads != d_model, a deeper decoder."""
    # transformers 5 always ties T5's lm_head at build time; a v1.1 checkpoint it loads keeps its own head,
    # which is what untying by hand reproduces (config.json then says tied but stores both, unequal)
    cfg = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=12,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = transformers.T5ForConditionalGeneration(cfg)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32))
    return model


def bart() -> torch.nn.Module:
    """BART with scaled embeddings and a deeper decoder."""
    cfg = transformers.BartConfig(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=40,
        scale_embedding=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    return transformers.BartForConditionalGeneration(cfg)


FAMILIES = {"t5_v1_0": t5_v1_0, "t5_v1_1": t5_v1_1, "bart": bart}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per family: the HF model, its directory, and tformer loads with each attention backend."""
    return load_families(FAMILIES, tmp_path_factory)


def batch(family: str, padded: bool) -> tuple[torch.Tensor, ...]:
    """Source ids/mask (B, S) and decoder input ids/mask (B, T), right-padded when asked."""
    pad = PAD[family]
    src, src_mask = right_padded_batch(VOCAB, [13, 8, 4] if padded else [13] * 3, pad_id=pad, seed=1)
    tgt, tgt_mask = right_padded_batch(VOCAB, [9, 3, 6] if padded else [9] * 3, pad_id=pad, seed=2)
    return src, src_mask, tgt, tgt_mask


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match(models, family, impl, padded):
    hf, _, ours = models[family]
    src, src_mask, tgt, tgt_mask = batch(family, padded)
    with torch.no_grad():
        ref = hf(
            input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask
        )
        got = ours[impl](src, src_mask, tgt, tgt_mask)
    assert_close_scaled(got.encoder_last_hidden_state, ref.encoder_last_hidden_state, src_mask)
    assert_close_scaled(got.logits, ref.logits, tgt_mask)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_encode_then_decode_equals_forward(models, family):
    _, _, ours = models[family]
    model = ours["sdpa"]
    src, src_mask, tgt, tgt_mask = batch(family, True)
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        split = model.decode(tgt, memory, src_mask, tgt_mask).logits
        whole = model(src, src_mask, tgt, tgt_mask).logits
    assert torch.equal(split, whole)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_teacher_forced_loss_matches_hf_labels_loss(models, family):
    """HF shifts ``labels`` right itself; the same shift by hand plus token_cross_entropy gives its loss."""
    hf, _, ours = models[family]
    src, src_mask, tgt, tgt_mask = batch(family, True)
    labels = tgt.masked_fill(tgt_mask == 0, -100)
    start = ours["sdpa"].config.decoder_start_token_id
    decoder_input = torch.cat([torch.full_like(tgt[:, :1], start), tgt[:, :-1]], dim=1)
    decoder_input = decoder_input.masked_fill(decoder_input == -100, PAD[family])
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, labels=labels).loss
        loss = token_cross_entropy(ours["sdpa"](src, src_mask, decoder_input).logits, labels)
    assert_close_scaled(loss, ref)


def test_t5_tying_and_scaling_follow_transformers(models):
    v10, v11 = models["t5_v1_0"][2]["sdpa"], models["t5_v1_1"][2]["sdpa"]
    assert v10.config.tie_word_embeddings and v10.config.scale_decoder_outputs
    assert v10.lm_head.weight is v10.shared.weight
    assert not v11.config.tie_word_embeddings and not v11.config.scale_decoder_outputs
    assert v11.config.head_dim == 12 and v11.config.head_dim * v11.config.n_heads != v11.config.d_model
    assert (v11.config.n_layers, v11.config.n_decoder_layers) == (2, 3)
    assert (v10.config.activation, v10.config.gated_ffn) == ("relu", False)
    assert (v11.config.activation, v11.config.gated_ffn) == ("gelu_tanh", True)


@pytest.mark.parametrize("family", ["t5_v1_0", "t5_v1_1"])
def test_t5_pre_transformers_5_config_is_read_the_same(models, family, tmp_path):
    """Older config.json files carry only tie_word_embeddings (false for v1.1), no scale_decoder_outputs."""
    hf, d, _ = models[family]
    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("scale_decoder_outputs")
    cfg["tie_word_embeddings"] = family == "t5_v1_0"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").symlink_to(d / "model.safetensors")
    ours = tformer.from_pretrained(tmp_path)
    src, src_mask, tgt, tgt_mask = batch(family, True)
    with torch.no_grad():
        ref = hf(
            input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask
        )
        assert_close_scaled(ours(src, src_mask, tgt, tgt_mask).logits, ref.logits, tgt_mask)


def test_bart_options_map_to_config(models):
    cfg = models["bart"][2]["sdpa"].config
    assert (cfg.position_offset, cfg.max_seq_len, cfg.embed_scale, cfg.lm_head_bias) == (2, 40, True, True)
    assert (cfg.n_layers, cfg.n_decoder_layers, cfg.norm_placement) == (2, 3, "post")


@pytest.mark.parametrize("flag", ["add_final_layer_norm", "normalize_before"])
def test_mbart_options_are_refused(models, flag, tmp_path):
    _, d, _ = models["bart"]
    cfg = json.loads((d / "config.json").read_text()) | {flag: True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").symlink_to(d / "model.safetensors")
    with pytest.raises(tformer.errors.ConfigError, match=flag):
        tformer.from_pretrained(tmp_path)
