import pytest
import torch
from torch.nn import functional as F

from tformer.nn.attention import Attention
from tformer.nn.block import TransformerBlock
from tformer.nn.feedforward import FeedForward, GatedFeedForward, get_activation
from tformer.nn.norms import RMSNorm, make_norm


def test_rmsnorm_formula():
    norm = RMSNorm(4, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.randn(3, 4)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert norm(x.bfloat16()).dtype == torch.float32  # fp32 weight promotes, as in HF


def test_layernorm_without_bias():
    assert make_norm("layernorm", 8, 1e-5, bias=False).bias is None
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("batchnorm", 8, 1e-5)


def test_activations():
    x = torch.linspace(-3, 3, 11)
    torch.testing.assert_close(get_activation("gelu_tanh")(x), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(get_activation("gelu")(x), 0.5 * x * (1 + torch.erf(x / 2**0.5)))
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("tanhshrink")


def test_feedforward_and_swiglu():
    ff = FeedForward(4, 8, "relu")
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ff(x), ff.down(torch.relu(ff.up(x))))
    glu = GatedFeedForward(4, 8, "silu")
    torch.testing.assert_close(glu(x), glu.down(F.silu(glu.gate(x)) * glu.up(x)))
    assert glu.gate.bias is None


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_block_residual_arrangement(placement):
    torch.manual_seed(0)
    d = 8
    block = TransformerBlock(
        Attention(d, 2, 2, 4), FeedForward(d, 16), lambda: torch.nn.LayerNorm(d), placement=placement
    ).eval()
    x = torch.randn(1, 3, d)
    a = lambda h: block.attn(h, is_causal=True)[0]  # noqa: E731
    if placement == "pre":
        h = x + a(block.attn_norm(x))
        expected = h + block.ffn(block.ffn_norm(h))
    else:
        h = block.attn_norm(x + a(x))
        expected = block.ffn_norm(h + block.ffn(h))
    torch.testing.assert_close(block(x, is_causal=True)[0], expected)
    with pytest.raises(ValueError, match="placement"):
        TransformerBlock(
            Attention(d, 2, 2, 4), FeedForward(d, 16), lambda: torch.nn.LayerNorm(d), placement="mid"
        )


def test_block_dropout_only_in_training():
    d = 8
    block = TransformerBlock(
        Attention(d, 2, 2, 4), FeedForward(d, 16), lambda: torch.nn.LayerNorm(d), dropout=0.5
    )
    x = torch.randn(1, 4, d)
    block.eval()
    torch.testing.assert_close(block(x)[0], block(x)[0])
    block.train()
    torch.manual_seed(0)
    a = block(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, block(x)[0])
