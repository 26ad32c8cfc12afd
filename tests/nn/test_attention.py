import pytest
import torch

from tformer.nn.attention import Attention, fused_attention, reference_attention, repeat_kv
from tformer.nn.masks import allowed_positions, build_attention_mask, padding_at


def test_repeat_kv_shares_each_head():
    x = torch.randn(2, 2, 5, 4)
    y = repeat_kv(x, 3)
    assert y.shape == (2, 6, 5, 4)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 2], x[:, 0]) and torch.equal(y[:, 3], x[:, 1])


@pytest.mark.parametrize("n_kv", [4, 2, 1])
@pytest.mark.parametrize("causal", [True, False])
def test_fused_matches_reference(n_kv, causal):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, n_kv, 6, 8), torch.randn(2, n_kv, 6, 8)
    mask = torch.zeros(2, 1, 6, 6)
    mask[0, ..., 4:] = torch.finfo(torch.float32).min  # padding keys in the first row
    if causal:  # an explicit mask carries causality itself
        mask = mask.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), torch.finfo(torch.float32).min)
    for m in (None, mask):
        ref, w = reference_attention(q, k, v, m, causal, 8**-0.5)
        fused = fused_attention(q, k, v, m, causal, 8**-0.5)
        torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))


def test_reference_attention_is_softmax_qk_v():
    q, k, v = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    out, w = reference_attention(q, k, v, None, False, 0.5)
    expected_w = torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_w @ v)


def test_mha_with_full_kv_heads_equals_torch_multihead_attention():
    torch.manual_seed(0)
    d, h = 16, 4
    ours = Attention(d, h, h, d // h).eval()
    torch_mha = torch.nn.MultiheadAttention(d, h, batch_first=True).eval()
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(ours.qkv_proj.weight)
        torch_mha.in_proj_bias.copy_(ours.qkv_proj.bias)
        torch_mha.out_proj.weight.copy_(ours.o_proj.weight)
        torch_mha.out_proj.bias.copy_(ours.o_proj.bias)
    x = torch.randn(2, 7, d)
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)
    ref, _ = torch_mha(x, x, x, attn_mask=causal, need_weights=False)
    for impl in ("sdpa", "reference"):
        ours.impl = impl
        torch.testing.assert_close(ours(x, is_causal=True)[0], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_kv", [1, 2])
def test_gqa_equals_mha_with_duplicated_kv_heads(n_kv):
    torch.manual_seed(1)
    d, h, hd = 32, 4, 8
    gqa = Attention(d, h, n_kv, hd, qkv_bias=False).eval()
    mha = Attention(d, h, h, hd, qkv_bias=False).eval()
    rep = h // n_kv
    wq, wk, wv = gqa.qkv_proj.weight.split([h * hd, n_kv * hd, n_kv * hd])
    dup = lambda w: w.view(n_kv, 1, hd, d).expand(n_kv, rep, hd, d).reshape(h * hd, d)  # noqa: E731
    with torch.no_grad():
        mha.qkv_proj.weight.copy_(torch.cat([wq, dup(wk), dup(wv)]))
        mha.o_proj.load_state_dict(gqa.o_proj.state_dict())
    x = torch.randn(2, 5, d)
    torch.testing.assert_close(gqa(x, is_causal=True)[0], mha(x, is_causal=True)[0], rtol=1e-5, atol=1e-6)


def test_need_weights_returns_attention_probabilities():
    attn = Attention(8, 2, 2, 4).eval()
    out, w = attn(torch.randn(1, 3, 8), is_causal=True, need_weights=True)
    assert w.shape == (1, 2, 3, 3)
    assert torch.all(w[0, :, 0, 1:] == 0)  # no attention to the future


def test_cross_attention_uses_memory_and_caches_it():
    from tformer.nn.kv_cache import StaticKV

    attn = Attention(8, 2, 2, 4, cross=True).eval()
    x, mem = torch.randn(1, 2, 8), torch.randn(1, 5, 8)
    out, w = attn(x, memory=mem, need_weights=True)
    assert w.shape == (1, 2, 2, 5)
    attn.cache = StaticKV()
    first, _ = attn(x, memory=mem)
    again, _ = attn(x, memory=None)  # served from the cache
    torch.testing.assert_close(first, again)
    with pytest.raises(ValueError, match="memory"):
        Attention(8, 2, 2, 4, cross=True)(x)


def test_allowed_positions_causal_window():
    pos = torch.arange(4)
    allowed = allowed_positions(pos, pos, causal=True, sliding_window=2)
    assert allowed.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert allowed_positions(pos, pos, causal=False).all()
    assert not allowed_positions(pos, torch.tensor([-1, 0]), causal=True)[:, 0].any()  # empty slots


def test_build_mask_fast_paths_and_padding():
    pos = torch.arange(3)
    assert build_attention_mask(pos, pos, causal=True, dtype=torch.float32, aligned=True) == (None, True)
    assert build_attention_mask(pos, pos, causal=False, dtype=torch.float32) == (None, False)
    pad = padding_at(torch.tensor([[1, 1, 0]]), pos)
    mask, is_causal = build_attention_mask(pos, pos, causal=False, dtype=torch.float32, key_padding=pad)
    assert not is_causal and mask.shape == (1, 1, 3, 3)
    assert torch.all(mask[0, 0, :, 2] == torch.finfo(torch.float32).min) and torch.all(mask[0, 0, :, :2] == 0)


def test_padding_mask_must_cover_all_key_positions():
    with pytest.raises(ValueError, match="attention_mask covers 2 positions"):
        padding_at(torch.ones(1, 2), torch.arange(4))
