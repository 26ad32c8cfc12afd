"""The optional native decode kernels: equal to PyTorch's results, and generation unchanged with them.

The first run compiles them (about a minute; cached in torch's extension directory afterwards). Where
they cannot be built (no AVX2, no C++ compiler) the tests that need them skip; TFORMER_BUILD_NATIVE=0
skips them without trying.
"""

from __future__ import annotations

import copy
import functools
import os

import pytest
import torch
import torch.nn.functional as F

import tformer
from tests.generation.helpers import padded_batch
from tformer.generation import native
from tformer.nn.attention import Attention
from tformer.nn.block import TransformerBlock


@pytest.fixture(scope="module")
def ext():
    if os.environ.get("TFORMER_BUILD_NATIVE") == "0":
        pytest.skip("TFORMER_BUILD_NATIVE=0: native kernels not built")
    kernels = native.load()
    if kernels is None:
        pytest.skip("native kernels cannot be built here (needs AVX2 and a C++ compiler)")
    return kernels


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


def test_generation_is_unchanged_and_everything_restored(families, ext):
    _, model = families["llama"]
    ids, mask = padded_batch("llama", [7, 7], seed=3)
    single = ids[:1]
    kw = dict(max_new_tokens=12, eos_token_id=[], output_logits=True, return_dict=True)
    plain = model.generate(single, **kw)
    with native.native_kernels(model) as active:
        assert active
        fast = model.generate(single, **kw)
        batched = model.generate(ids, attention_mask=mask, max_new_tokens=4)  # several rows: PyTorch path
    assert torch.equal(fast.sequences, plain.sequences)
    for a, b in zip(fast.logits, plain.logits):
        assert (a - b).abs().max() <= 1e-5
    assert torch.equal(batched, model.generate(ids, attention_mask=mask, max_new_tokens=4))
    assert all("forward" not in vars(m) for m in model.modules())
    assert all(
        m.decode_kernel is None for m in model.modules() if isinstance(m, (Attention, TransformerBlock))
    )


def test_training_mode_falls_back_to_pytorch(families, ext):
    """With autograd recording, the kernels step aside (they have no backward)."""
    _, model = families["gpt2"]
    ids = torch.tensor([[5, 6, 7]])
    with native.native_kernels(model):
        logits = model(ids[:, :1]).logits
    assert logits.requires_grad
    logits.sum().backward()
    assert model.lm_head.weight.grad is not None
    model.zero_grad()


def test_bf16_prompt_runs_through_fp32_and_stays_close(families, ext):
    import copy

    _, model = families["gpt2"]
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    ids = torch.randint(3, 90, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(ids).logits
        plain = bf16(ids).logits.float()
        with native.native_kernels(bf16):
            fast = bf16(ids).logits.float()
    scale = ref.abs().max()
    assert (fast - ref).abs().max() <= 0.05 * scale  # bf16 rounding, no more
    assert (fast - ref).abs().max() <= 2 * (plain - ref).abs().max() + 1e-3 * scale


#: decoder layers the fused one-token kernel computes: every norm, activation and attention layout it has
FUSED_VARIANTS = {
    "gpt2: LayerNorm, tanh-GELU, biases": ("gpt-tiny", {}),
    "llama: RMSNorm, SwiGLU, RoPE, GQA": ("llama-tiny", {}),
    "ReLU, no biases": (
        "gpt-tiny",
        dict(activation="relu", attn_bias=False, attn_out_bias=False, ffn_bias=False, norm_bias=False),
    ),
    "gated erf-GELU (GeGLU), MQA": ("llama-tiny", dict(activation="gelu", n_kv_heads=1)),
}


def count_fused_steps(model) -> list[int]:
    """Wrap every block's fused kernel (inside ``native_kernels``) to count the steps it computed."""
    done = [0]

    def counted(kernel, *args):
        out = kernel(*args)
        done[0] += out is not None
        return out

    for m in model.modules():
        if isinstance(m, TransformerBlock) and m.decode_kernel is not None:
            m.decode_kernel = functools.partial(counted, m.decode_kernel)
    return done


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant", FUSED_VARIANTS)
def test_fused_layer_step_matches_the_pytorch_layers(ext, variant, dtype):
    """Every cached step through the fused layer gives PyTorch's logits (fp32: to 1e-5; bf16: no further
    from the fp32 result than PyTorch's own bf16 run), so the cache it writes is right too."""
    preset, overrides = FUSED_VARIANTS[variant]
    torch.manual_seed(0)
    model = tformer.build(preset, **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():  # off unit norms and zero biases, so a swapped tensor shows
            p.add_(0.1 * torch.randn_like(p))
    low = copy.deepcopy(model).to(dtype)
    ids = torch.randint(3, 500, (1, 11), generator=torch.Generator().manual_seed(1))
    kw = dict(max_new_tokens=9, eos_token_id=[], output_logits=True, return_dict=True)
    with torch.inference_mode():
        exact = model.generate(ids, **kw)
        plain = low.generate(ids, **kw)
        with native.native_kernels(low):
            fused_steps = count_fused_steps(low)
            fast = low.generate(ids, **kw)
    assert fused_steps[0] == model.config.n_layers * 8  # every layer of every step after the prompt
    for got, base, ref in zip(fast.logits, plain.logits, exact.logits):
        scale = ref.abs().max()
        if dtype == torch.float32:
            assert (got - base).abs().max() <= 1e-5 * scale
        else:
            assert (got.float() - ref).abs().max() <= 2 * (base.float() - ref).abs().max() + 1e-3 * scale
    if dtype == torch.float32:
        assert torch.equal(fast.sequences, plain.sequences)


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("transformer-tiny", {}),  # post-LN
        ("mixtral-tiny", {}),  # a mixture of experts, not one feed-forward network
        ("gpt-tiny", dict(norm="rmsnorm", activation="silu")),  # any norm with any activation
    ],
)
def test_fused_layer_only_takes_layers_it_computes(preset, overrides):
    model = tformer.build(preset, **overrides)
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    supported = [native._layer_arguments(b) is not None for b in blocks]
    expected = preset == "gpt-tiny"
    assert supported and all(s == expected for s in supported)


def test_fused_layer_steps_aside_for_batches_and_rolling_caches(families, ext):
    """Several rows, or Mistral's ring-buffer cache: the PyTorch layers run and the results are unchanged."""
    _, mistral = families["mistral"]
    ids, mask = padded_batch("mistral", [9, 6], seed=4)
    kw = dict(max_new_tokens=20, eos_token_id=[])  # past the window of 16
    plain_batch = mistral.generate(ids, attention_mask=mask, **kw)
    plain_one = mistral.generate(ids[:1], **kw)
    with native.native_kernels(mistral):
        fused_steps = count_fused_steps(mistral)
        assert torch.equal(mistral.generate(ids, attention_mask=mask, **kw), plain_batch)
        assert torch.equal(mistral.generate(ids[:1], **kw), plain_one)
    assert fused_steps[0] == 0


def test_decode_layer_refuses_weights_that_do_not_fit_the_layer(ext):
    """A mis-shaped weight is a clear error, never a read past the end of a buffer."""
    model = tformer.build("gpt-tiny").eval()
    block = next(m for m in model.modules() if isinstance(m, TransformerBlock))
    params, rms, eps, act = native._layer_arguments(block)
    model.setup_caches(1, 8)
    k, v = block.attn.cache.k, block.attn.cache.v
    x = torch.randn(model.config.d_model)
    with torch.no_grad():
        fine = ext.decode_layer(x, [*params, None, None], rms, eps, k, v, 0, block.attn.n_heads, 0.25, act)
        assert fine.shape == x.shape
        for i in (4, 6, 12):  # q/k/v, output and down projections, one row short
            bad = list(params)
            bad[i] = bad[i][:-1].contiguous()
            with pytest.raises(RuntimeError, match="weight shapes"):
                ext.decode_layer(x, [*bad, None, None], rms, eps, k, v, 0, block.attn.n_heads, 0.25, act)
