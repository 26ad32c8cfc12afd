"""Encoder parity with Hugging Face: BertModel, BertForMaskedLM, BertForSequenceClassification,
BertForTokenClassification (token types, padding, both attention backends)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file, save_file

import tformer
from tests.parity.helpers import IMPLS, assert_close_scaled, load_families, right_padded_batch

transformers = pytest.importorskip("transformers")

VOCAB, PAD, N_LABELS = 96, 0, 3
ARCHS = ["BertModel", "BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification"]


def bert_config() -> transformers.BertConfig:
    """A tiny two-layer BERT with three labels."""
    return transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=32,
        type_vocab_size=2,
        pad_token_id=PAD,
        num_labels=N_LABELS,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per architecture: the HF model, its directory, and tformer loads with each attention backend."""
    makers = {arch: partial(getattr(transformers, arch), bert_config()) for arch in ARCHS}
    return load_families(makers, tmp_path_factory)


def batch(padded: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and two-segment token_type_ids (B, T)."""
    ids, mask = right_padded_batch(VOCAB, [11, 6, 3] if padded else [11, 11], pad_id=PAD, seed=int(padded))
    token_types = torch.zeros_like(ids)
    token_types[:, 4:] = 1
    return ids, mask, token_types * mask


def compare(arch: str, ref, got, mask: torch.Tensor) -> None:
    """The outputs each architecture defines, over non-padding positions where they are per token."""
    if arch == "BertModel":
        assert_close_scaled(got.last_hidden_state, ref.last_hidden_state, mask)
        assert_close_scaled(got.pooler_output, ref.pooler_output)  # first token: never padding
    elif arch == "BertForSequenceClassification":
        assert got.logits.shape == (mask.shape[0], N_LABELS)
        assert_close_scaled(got.logits, ref.logits)
    else:
        assert_close_scaled(got.logits, ref.logits, mask)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_match(models, arch, impl, padded):
    hf, _, ours = models[arch]
    ids, mask, token_types = batch(padded)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=token_types)
        got = ours[impl](ids, attention_mask=mask, token_type_ids=token_types)
    compare(arch, ref, got, mask)


def test_token_types_change_the_output(models):
    """Guard: the segment embedding is loaded and used (else the parity above could ignore token types)."""
    _, _, ours = models["BertModel"]
    ids, mask, token_types = batch(False)
    with torch.no_grad():
        with_types = ours["sdpa"](ids, mask, token_type_ids=token_types).last_hidden_state
        without = ours["sdpa"](ids, mask).last_hidden_state
    assert (with_types - without).abs().max() > 1e-3


def test_checkpoints_cover_both_key_styles(models):
    """BertModel files have bare keys, head models ``bert.``-prefixed ones: both are exercised above."""
    bare = load_file(models["BertModel"][1] / "model.safetensors")
    prefixed = load_file(models["BertForMaskedLM"][1] / "model.safetensors")
    assert not any(k.startswith("bert.") for k in bare)
    assert all(k.startswith(("bert.", "cls.")) for k in prefixed)


def test_head_and_labels_come_from_the_architecture(models):
    heads = {arch: ours["sdpa"].config for arch, (_, _, ours) in models.items()}
    assert (heads["BertModel"].head, heads["BertModel"].pooler) == ("none", True)
    assert (heads["BertForMaskedLM"].head, heads["BertForMaskedLM"].pooler) == ("mlm", False)
    assert heads["BertForSequenceClassification"].num_labels == N_LABELS
    assert heads["BertForTokenClassification"].head == "token_classification"
    mlm = models["BertForMaskedLM"][2]["sdpa"]
    assert mlm.head.decoder.weight is mlm.body.embed.tok.weight  # tied as in the file


def test_pretraining_style_mlm_checkpoint_loads(models, tmp_path):
    """bert-base-uncased style: decoder.bias stored too, plus position_ids, a pooler and the NSP head."""
    hf, d, _ = models["BertForMaskedLM"]
    tensors = load_file(d / "model.safetensors")
    tensors["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"].clone()
    tensors["bert.embeddings.position_ids"] = torch.arange(32)[None]
    tensors["bert.pooler.dense.weight"] = torch.randn(64, 64)
    tensors["bert.pooler.dense.bias"] = torch.randn(64)
    tensors["cls.seq_relationship.weight"] = torch.randn(2, 64)
    tensors["cls.seq_relationship.bias"] = torch.randn(2)
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    ours = tformer.from_pretrained(tmp_path)
    ids, mask, token_types = batch(True)
    with torch.no_grad():
        compare("BertForMaskedLM", hf(ids, mask, token_types), ours(ids, mask, token_types), mask)


def test_untied_mlm_decoder_is_kept_apart(models, tmp_path):
    """A file whose decoder weight differs from the word embeddings loads untied, as transformers 5 does."""
    hf, d, _ = models["BertForMaskedLM"]
    tensors = load_file(d / "model.safetensors")
    tensors["cls.predictions.decoder.weight"] = torch.randn(VOCAB, 64)
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    ours = tformer.from_pretrained(tmp_path)
    assert not ours.config.tie_word_embeddings
    assert torch.equal(ours.head.decoder.weight, tensors["cls.predictions.decoder.weight"])
    assert torch.equal(ours.body.embed.tok.weight, tensors["bert.embeddings.word_embeddings.weight"])


def test_relative_position_bert_is_refused(tmp_path):
    cfg = bert_config().to_dict() | {
        "architectures": ["BertModel"],
        "position_embedding_type": "relative_key",
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tformer.errors.ConfigError, match="relative_key"):
        tformer.from_pretrained(tmp_path)
