import pytest
import torch

from tformer.errors import ConfigError
from tformer.nn.attention import Attention, reference_attention
from tformer.nn.attention_kinds import make_attention_kind
from tformer.nn.attention_maps import (
    AttentionWeightsUnavailable,
    MapSelection,
    attention_probabilities,
    check_weights_available,
)
from tformer.nn.masks import build_attention_mask
from tformer.nn.positions import ALiBiBias


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_selected_heads_equal_those_rows_of_all_heads(n_kv):
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, n_kv, 7, 8)
    bias = ALiBiBias(4)(torch.arange(2, 7), torch.arange(7))  # a per-head bias (1, 4, 5, 7)
    mask, _ = build_attention_mask(torch.arange(2, 7), torch.arange(7), causal=True, dtype=q.dtype, bias=bias)
    full = attention_probabilities(q, k, mask, False, 0.3)
    for heads in ([3], [2, 0], [1, 2, 3, 0]):
        part = attention_probabilities(q, k, mask, False, 0.3, heads)
        assert part.shape == (2, len(heads), 5, 7)
        torch.testing.assert_close(part, full[:, heads], rtol=0, atol=1e-6)


def test_probabilities_are_the_reference_weights_and_respect_causality():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    _, ref = reference_attention(q, k, v, None, True, 0.5)
    probs = attention_probabilities(q, k, None, True, 0.5)
    assert torch.equal(probs, ref)
    # 4 queries aligned to the last 4 of 6 keys: query 0 sees keys 0..2 only
    assert probs[0, :, 0, 3:].abs().max() < 1e-30 and probs[0, :, 3].gt(0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 4))


def test_sdpa_attention_returns_weights_without_leaving_sdpa(monkeypatch):
    torch.manual_seed(0)
    attn = Attention(16, 4, 2, 4).eval()
    x = torch.randn(2, 5, 16)
    plain, none = attn(x, is_causal=True)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda *a, **kw: calls.append(1) or real(*a, **kw),
    )
    out, w = attn(x, is_causal=True, need_weights=True, weight_heads=(1, 3))
    assert none is None and calls == [1] and torch.equal(out, plain)
    attn.impl = "reference"
    _, ref = attn(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(w, ref[:, [1, 3]], rtol=0, atol=1e-6)


def test_selection_resolves_negative_indices_and_rejects_out_of_range():
    sel = MapSelection.resolve([0, -1, 0], [2], n_layers=4, n_heads=8, where="decoder")
    assert sel == MapSelection((0, 3), (2,))
    assert MapSelection.resolve(None, None, n_layers=2, n_heads=4).layers == (0, 1)
    with pytest.raises(ConfigError, match=r"layer 4 is out of range: the decoder has 4 layers \(0..3\)"):
        MapSelection.resolve([4], None, n_layers=4, n_heads=8, where="decoder")
    with pytest.raises(ConfigError, match=r"head -9 is out of range: the encoder has 8 heads"):
        MapSelection.resolve(None, [-9], n_layers=4, n_heads=8, where="encoder")
    with pytest.raises(ConfigError, match="no heads selected"):
        MapSelection.resolve(None, [], n_layers=4, n_heads=8)


def test_a_kind_without_weights_is_named():
    attn = Attention(16, 4, 4, 4)
    check_weights_available(attn)  # the exact kind has maps
    attn.kind = make_attention_kind("performer", None, d_model=16, n_heads=4, n_kv_heads=4, head_dim=4)
    with pytest.raises(
        AttentionWeightsUnavailable, match="attention kind 'performer' has no attention weights"
    ):
        check_weights_available(attn)
