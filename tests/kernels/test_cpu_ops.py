"""The compiled kernels (cpu/*.cpp) called directly: equal to PyTorch, and their named-field checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tformer
from tformer.kernels import layer_fields
from tformer.nn.block import TransformerBlock

TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(300, 64), (129, 77), (8, 1000)])  # odd sizes exercise the scalar tails
def test_linear_row_matches_pytorch(ext, dtype, shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g).to(dtype)
    b, x = torch.randn(shape[0], generator=g).to(dtype), torch.randn(shape[1], generator=g).to(dtype)
    ref = F.linear(x.float(), w.float(), b.float())
    for bias in (b, None):
        got = ext.linear_row(x, w, bias)
        assert got.dtype == dtype
        expected = ref if bias is not None else ref - b.float()
        assert (got.float() - expected).abs().max() <= TOL[dtype] * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2), (6, 1)])
def test_attend_one_matches_sdpa_on_cache_views(ext, dtype, heads, kv_heads):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, heads, 1, 32, generator=g).to(dtype)
    cache_k = torch.randn(3, kv_heads, 50, 32, generator=g).to(dtype)
    cache_v = torch.randn(3, kv_heads, 50, 32, generator=g).to(dtype)
    k, v = cache_k[:, :, :37], cache_v[:, :, :37]  # a prefix view of a preallocated cache (strided)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=0.3, enable_gqa=True)
    got = ext.attend_one(q, k, v, 0.3)
    assert got.shape == ref.shape and got.dtype == dtype
    assert (got.float() - ref).abs().max() <= TOL[dtype]


@pytest.fixture
def gpt_layer():
    """A gpt-tiny block's decode_layer fields, its caches (8 slots) and an input token (d_model,)."""
    torch.manual_seed(0)
    model = tformer.build("gpt-tiny").eval()
    with torch.no_grad():
        for p in model.parameters():  # off unit norms and zero biases, so a dropped tensor shows
            p.add_(0.1 * torch.randn_like(p))
    block = next(m for m in model.modules() if isinstance(m, TransformerBlock))
    model.setup_caches(1, 8)
    fields = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in layer_fields(block).items()}
    return fields, block.attn.cache, torch.randn(model.config.d_model)


def test_decode_layer_refuses_weights_that_do_not_fit_the_layer(ext, gpt_layer):
    """A mis-shaped weight is a clear error, never a read past the end of a buffer."""
    fields, cache, x = gpt_layer
    fine = ext.decode_layer(ext.DecoderLayer(**fields), x, cache.k, cache.v, 0)
    assert fine.shape == x.shape
    for name in ("qkv_weight", "out_weight", "down_weight"):  # q/k/v, output and down projections
        short = fields[name][:-1].contiguous()  # one row short
        expected = tuple(fields[name].shape)
        with pytest.raises(
            ValueError, match=rf"'{name}' is \({short.shape[0]}, .*the layer needs \({expected[0]}, "
        ):
            ext.DecoderLayer(**{**fields, name: short})
    weight = fields["down_weight"].clone()  # a weight that shrinks after the layer was built
    layer = ext.DecoderLayer(**{**fields, "down_weight": weight})
    weight.data = weight[:, :-1].contiguous()
    with pytest.raises(ValueError, match="'down_weight' is"):
        ext.decode_layer(layer, x, cache.k, cache.v, 0)


def test_decoder_layer_names_a_missing_unknown_or_mistyped_field(ext, gpt_layer):
    fields, _, _ = gpt_layer
    without = {k: v for k, v in fields.items() if k not in ("qkv_weight", "eps")}
    with pytest.raises(ValueError, match=r"missing field\(s\) 'eps', 'qkv_weight'$"):
        ext.DecoderLayer(**without)
    with pytest.raises(ValueError, match=r"missing field\(s\) 'up_weight'"):
        ext.DecoderLayer(**{**fields, "up_weight": None})  # required: None is missing
    with pytest.raises(ValueError, match="unknown field 'qkv_wieght'; the fields are .*qkv_weight"):
        ext.DecoderLayer(**fields, qkv_wieght=fields["qkv_weight"])
    with pytest.raises(ValueError, match="field 'eps' has the wrong type"):
        ext.DecoderLayer(**{**fields, "eps": "small"})
    with pytest.raises(ValueError, match="field 'qkv_weight' has the wrong type"):
        ext.DecoderLayer(**{**fields, "qkv_weight": [1.0, 2.0]})
    with pytest.raises(
        ValueError, match="field 'activation' is 'gelu_new'; one of gelu, gelu_tanh, relu, silu"
    ):
        ext.DecoderLayer(**{**fields, "activation": "gelu_new"})
    with pytest.raises(ValueError, match="field 'norm' is 'batchnorm'; one of layernorm, rmsnorm"):
        ext.DecoderLayer(**{**fields, "norm": "batchnorm"})
    with pytest.raises(ValueError, match="'up_weight' is BFloat16, the layer is Float"):
        ext.DecoderLayer(**{**fields, "up_weight": fields["up_weight"].bfloat16()})
    with pytest.raises(ValueError, match="'out_weight' is not contiguous"):
        ext.DecoderLayer(**{**fields, "out_weight": fields["out_weight"].t().contiguous().t()})
    with pytest.raises(ValueError, match="n_kv_heads dividing n_heads"):
        ext.DecoderLayer(**{**fields, "n_kv_heads": 3})


def test_decode_layer_checks_the_token_cache_and_position(ext, gpt_layer):
    fields, cache, x = gpt_layer
    layer = ext.DecoderLayer(**fields)
    d = x.numel()
    with pytest.raises(ValueError, match=rf"decode_layer: 'x' is \({d - 1},\); the layer needs \({d},\)"):
        ext.decode_layer(layer, x[:-1], cache.k, cache.v, 0)
    with pytest.raises(ValueError, match="position 8 is outside the cache's 8 slots"):
        ext.decode_layer(layer, x, cache.k, cache.v, 8)
    with pytest.raises(ValueError, match="'v_cache' is"):
        ext.decode_layer(layer, x, cache.k, cache.v[:, :1].contiguous(), 0)
    cos = torch.ones(fields["head_dim"])
    with pytest.raises(ValueError, match="RoPE needs both 'cos' and 'sin'"):
        ext.decode_layer(layer, x, cache.k, cache.v, 0, cos=cos)


def test_optional_fields_may_be_left_out(ext, gpt_layer):
    """Leaving an optional field out is the same as passing None: the term is absent."""
    fields, cache, x = gpt_layer
    no_bias = {**fields, "qkv_bias": None, "out_bias": None}
    left_out = {
        k: v for k, v in fields.items() if k not in ("qkv_bias", "out_bias", "gate_weight", "gate_bias")
    }
    k, v = cache.k.clone(), cache.v.clone()
    a = ext.decode_layer(ext.DecoderLayer(**no_bias), x, cache.k, cache.v, 0)
    b = ext.decode_layer(ext.DecoderLayer(**left_out), x, k, v, 0)
    assert torch.equal(a, b) and torch.equal(cache.k, k)
    with_bias = ext.decode_layer(ext.DecoderLayer(**fields), x, k, v, 0)
    assert not torch.equal(with_bias, a)  # the biases were really left out above
