"""Decoder-only parity with Hugging Face: GPT-2, Llama (GQA), Mistral (sliding window)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import tformer
from tests.parity.helpers import (
    assert_close_scaled,
    hf_gpt2,
    hf_llama,
    hf_mistral,
    load_families,
    perturb,
    right_padded_batch,
)

transformers = pytest.importorskip("transformers")

VOCAB = 96


FAMILIES = {
    "gpt2": partial(hf_gpt2, VOCAB),
    "llama": partial(hf_llama, VOCAB),
    "mistral": partial(hf_mistral, VOCAB, window=5),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One HF model per family, saved and loaded once with each attention backend."""
    return {name: (hf, loads) for name, (hf, _, loads) in load_families(FAMILIES, tmp_path_factory).items()}


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_without_padding(models, family, impl):
    hf, ours = models[family]
    ids, _ = right_padded_batch(VOCAB, [12, 12], pad_id=0)
    with torch.no_grad():
        assert_close_scaled(ours[impl](ids).logits, hf(ids).logits)


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_with_padding(models, family, impl):
    hf, ours = models[family]
    ids, mask = right_padded_batch(VOCAB, [12, 7, 3], pad_id=0, seed=1)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).logits
        got = ours[impl](ids, attention_mask=mask).logits
    assert_close_scaled(got, ref, mask)


def test_mistral_window_is_shorter_than_input(models):
    hf, _ = models["mistral"]
    assert hf.config.sliding_window < 12  # the parity tests above exercise the window


def test_gpt2_loss_and_gradients_match(models):
    hf, ours = models["gpt2"]
    model = ours["sdpa"]
    ids, _ = right_padded_batch(VOCAB, [16, 16], pad_id=0, seed=2)
    hf.zero_grad()
    model.zero_grad()
    hf_loss = hf(ids, labels=ids).loss
    hf_loss.backward()
    from tformer.training.losses import causal_lm_loss

    loss = causal_lm_loss(model(ids).logits, ids)
    loss.backward()
    torch.testing.assert_close(loss, hf_loss, rtol=1e-6, atol=1e-6)
    hf_params = dict(hf.named_parameters())
    pairs = {
        "body.embed.tok.weight": ("transformer.wte.weight", False),
        "body.embed.positions.weight": ("transformer.wpe.weight", False),
        "body.layers.1.attn.qkv_proj.weight": ("transformer.h.1.attn.c_attn.weight", True),
        "body.layers.0.ffn.down.weight": ("transformer.h.0.mlp.c_proj.weight", True),
        "body.layers.0.attn_norm.weight": ("transformer.h.0.ln_1.weight", False),
        "body.norm.bias": ("transformer.ln_f.bias", False),
    }
    ours_params = dict(model.named_parameters())
    for name, (hf_name, transposed) in pairs.items():
        g_ref = hf_params[hf_name].grad
        g_ref = g_ref.t() if transposed else g_ref
        g = ours_params[name].grad
        assert g is not None, name
        scale = g_ref.abs().max().clamp(min=1e-8)
        assert (g - g_ref).abs().max() <= 1e-5 * scale.clamp(min=1.0), name
    hf.zero_grad()
    model.zero_grad()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_head_stored_apart_from_the_embedding_loads_untied(family, tmp_path):
    """config.json says tied, but the file holds a different lm_head: transformers 5 keeps the two apart
    (and warns), so tformer does too, and the logits still match."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(3)
    hf = FAMILIES[family]()
    hf.config.tie_word_embeddings = True
    perturb(hf)
    hf.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    embedding = hf.get_input_embeddings().weight
    tensors["lm_head.weight"] = torch.randn_like(embedding)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = type(hf).from_pretrained(tmp_path).eval()
    ours = tformer.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight.data_ptr() != reloaded.get_input_embeddings().weight.data_ptr()
    assert not ours.config.tie_word_embeddings
    assert torch.equal(ours.lm_head.weight, tensors["lm_head.weight"])
    ids, _ = right_padded_batch(VOCAB, [9, 9], pad_id=0)
    with torch.no_grad():
        assert_close_scaled(ours(ids).logits, reloaded(ids).logits)
