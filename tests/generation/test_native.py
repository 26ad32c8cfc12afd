"""The optional native decode kernels: equal to PyTorch's results, and generation unchanged with them.

Compiling them takes about a minute, so these tests run only when a compiled copy is cached (any run of
benchmarks/bench_generate.py leaves one) or TFORMER_BUILD_NATIVE=1 asks for the build.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from tests.generation.helpers import padded_batch
from tformer.generation import native
from tformer.nn.attention import Attention

if not (native.is_built() or os.environ.get("TFORMER_BUILD_NATIVE") == "1"):
    pytest.skip(
        "native kernels not compiled (set TFORMER_BUILD_NATIVE=1 to build them)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def ext():
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
    assert all(m.decode_kernel is None for m in model.modules() if isinstance(m, Attention))


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
