"""linformer: with k = T and identity projections it is exact attention; shorter and padded inputs work."""

import pytest
import torch

import tformer
from tformer.nn.attention_kinds import LinformerAttention, MaskSpec

from .helpers import exact_with_mask, padding_mask, qkv


@pytest.mark.parametrize("share_kv", [False, True])
@pytest.mark.parametrize("H, Hkv", [(2, 2), (4, 1)])
def test_identity_projections_with_k_equal_to_T_are_exact_attention(share_kv, H, Hkv):
    T = 12
    attn = LinformerAttention(T, T, share_kv=share_kv)
    with torch.no_grad():
        for p in (attn.proj_k, attn.proj_v):
            if p is not None:
                p.copy_(torch.eye(T))
    q, k, v = qkv(2, H, Hkv, T, 8, seed=H)
    ref = exact_with_mask(q, k, v, torch.ones(1, 1, T, T, dtype=torch.bool), 0.35)
    torch.testing.assert_close(attn(q, k, v, scale=0.35), ref, rtol=1e-5, atol=1e-6)


def test_a_shorter_input_equals_the_input_padded_with_zero_keys():
    attn = LinformerAttention(6, 20)
    q, k, v = qkv(1, 2, 2, 20, 8, seed=1)
    short = attn(q[:, :, :9], k[:, :, :9], v[:, :, :9], scale=0.3)
    k0, v0 = k.clone(), v.clone()
    k0[:, :, 9:], v0[:, :, 9:] = 0, 0
    torch.testing.assert_close(attn(q, k0, v0, scale=0.3)[:, :, :9], short, rtol=1e-5, atol=1e-6)


def test_a_padded_row_computes_what_the_unpadded_sequence_does():
    attn = LinformerAttention(6, 20)
    q, k, v = qkv(2, 2, 2, 15, 8, seed=2)
    spec = MaskSpec.build(torch.arange(15), torch.arange(15), padding_mask([15, 9], 15))
    padded = attn(q, k, v, mask=spec, scale=0.3)
    alone = attn(q[1:, :, :9], k[1:, :, :9], v[1:, :, :9], scale=0.3)
    torch.testing.assert_close(padded[1:, :, :9], alone, rtol=1e-5, atol=1e-6)


def test_too_long_and_causal_inputs_are_refused():
    attn = LinformerAttention(4, 10)
    q, k, v = qkv(1, 2, 2, 11, 8)
    with pytest.raises(ValueError, match="11 tokens is longer than this Linformer's max_seq_len=10"):
        attn(q, k, v, scale=0.3)
    with pytest.raises(ValueError, match="bidirectional only"):
        attn(q[:, :, :5], k[:, :, :5], v[:, :, :5], is_causal=True, scale=0.3)


def test_an_encoder_takes_the_models_max_seq_len():
    model = tformer.build("bert-tiny", attention_kind="linformer", attention_params={"k": 16})
    assert model.config.attention_params == {"k": 16, "max_seq_len": 128, "share_kv": False}
    assert model.body.layers[0].attn.kind.proj_k.shape == (16, 128)
    ids = torch.randint(0, 512, (2, 40))
    assert model(ids, attention_mask=padding_mask([40, 31], 40)).logits.shape == (2, 40, 512)
