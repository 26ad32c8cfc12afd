"""local_global (Longformer) attention equals exact attention under the equivalent boolean mask, in O(T w)."""

import pytest
import torch

import tformer
from tformer.nn.attention_kinds import LocalGlobalAttention, MaskSpec

from .helpers import LargestTensor, assert_rows_close, exact_with_mask, padding_mask, qkv


def local_global_mask(T: int, w: int, causal: bool, real: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T): |i - j| <= w (0 <= i - j <= w causal), or either token global; never a padding key."""
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    local = ((i - j) >= 0) & ((i - j) <= w) if causal else (i - j).abs() <= w
    allowed = local[None] | glob.bool()[:, None, :] | glob.bool()[:, :, None]
    if causal:
        allowed = allowed & (j <= i)[None]
    return (allowed & real.bool()[:, None, :])[:, None]


CASES = [  # T, window, heads, kv heads, lengths, global positions per row
    (16, 4, 2, 2, [16, 16], [[], []]),
    (37, 5, 4, 2, [37, 30], [[], []]),  # T not a multiple of w, GQA, padding
    (37, 5, 2, 1, [37, 25], [[0, 20], [3]]),  # global tokens, a different number per row
    (9, 1, 2, 2, [9, 7], [[4], []]),
    (6, 50, 2, 2, [6, 4], [[0], [1]]),  # window wider than the sequence
    (64, 8, 2, 2, [64, 64], [[0, 1, 2, 63], [32]]),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T, w, H, Hkv, lengths, globs", CASES)
def test_equals_exact_attention_with_the_equivalent_mask(causal, T, w, H, Hkv, lengths, globs):
    q, k, v = qkv(len(lengths), H, Hkv, T, 8, seed=T + w)
    real = padding_mask(lengths, T)
    glob = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, pos in enumerate(globs):
        glob[b, pos] = 1
    spec = MaskSpec.build(torch.arange(T), torch.arange(T), real, glob if glob.any() else None)
    ours = LocalGlobalAttention(8 * H, H, Hkv, 8, window=w)(q, k, v, mask=spec, is_causal=causal, scale=0.35)
    allowed = local_global_mask(T, w, causal, real, glob)
    assert_rows_close(ours, exact_with_mask(q, k, v, allowed, 0.35), allowed)


def test_dense_fallback_for_cached_queries_equals_the_blocked_computation():
    """Queries at the end of a sequence against all its keys (decoding with a cache) use the pattern as a mask."""
    T, w = 20, 3
    q, k, v = qkv(2, 2, 2, T, 8, seed=1)
    real, glob = padding_mask([20, 17], T), torch.zeros(2, T, dtype=torch.long)
    glob[:, 2] = 1
    attn = LocalGlobalAttention(16, 2, 2, 8, window=w)
    full = attn(
        q, k, v, mask=MaskSpec.build(torch.arange(T), torch.arange(T), real, glob), is_causal=True, scale=0.3
    )
    last = MaskSpec.build(torch.arange(T - 3, T), torch.arange(T), real, glob)
    tail = attn(q[:, :, -3:], k, v, mask=last, is_causal=True, scale=0.3)
    torch.testing.assert_close(tail[0], full[0, :, -3:], rtol=0, atol=1e-6)
    torch.testing.assert_close(tail[1, :, :1], full[1, :, -3:-2], rtol=0, atol=1e-6)  # row 1 pads from 17


def test_gradients_equal_exact_attention():
    T, w = 24, 4
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 2, T, 8, seed=2))
    glob = torch.zeros(1, T, dtype=torch.long)
    glob[0, 5] = 1
    spec = MaskSpec.build(torch.arange(T), torch.arange(T), None, glob)
    ours = LocalGlobalAttention(16, 2, 2, 8, window=w)(q, k, v, mask=spec, scale=0.3)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    allowed = local_global_mask(T, w, False, torch.ones(1, T), glob)
    ref = exact_with_mask(q, k, v, allowed, 0.3)
    for ours_g, ref_g in zip(grads, torch.autograd.grad(ref.square().sum(), (q, k, v))):
        torch.testing.assert_close(ours_g, ref_g, rtol=1e-5, atol=1e-6)


def test_memory_is_linear_in_length():
    """No tensor of the computation grows as T^2: the largest is a few times T * w."""
    T, w, H, D = 1024, 16, 2, 8
    q, k, v = qkv(1, H, H, T, D)
    glob = torch.zeros(1, T, dtype=torch.long)
    glob[0, :2] = 1
    spec = MaskSpec.build(torch.arange(T), torch.arange(T), None, glob)
    with LargestTensor() as probe:
        LocalGlobalAttention(16, H, H, D, window=w)(q, k, v, mask=spec, is_causal=False, scale=0.3)
    assert probe.numel <= H * T * (3 * w + 2), probe.numel  # scores: 3w band keys + 2 globals per query
    assert probe.numel < H * T * T / 10


def test_decoder_cached_decoding_equals_the_full_pass():
    torch.manual_seed(0)
    model = tformer.build("gpt-tiny", attention_kind="local_global", attention_params={"window": 5}).eval()
    ids = torch.randint(0, 512, (2, 14))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_caches(2, 14)
        prefill = model(ids[:, :6], input_pos=torch.arange(6)).logits
        steps = [model(ids[:, t : t + 1], input_pos=torch.tensor([t])).logits for t in range(6, 14)]
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), full, rtol=1e-5, atol=1e-5)


def test_a_model_with_a_window_covering_everything_equals_the_exact_model():
    torch.manual_seed(0)
    exact = tformer.build("bert-tiny").eval()
    local = tformer.build("bert-tiny", attention_kind="local_global", attention_params={"window": 200}).eval()
    local.load_state_dict(exact.state_dict())
    ids, mask = torch.randint(0, 512, (2, 19)), padding_mask([19, 12], 19)
    with torch.no_grad():
        a, b = exact(ids, attention_mask=mask).logits, local(ids, attention_mask=mask).logits
    torch.testing.assert_close(b[mask.bool()], a[mask.bool()], rtol=1e-5, atol=1e-5)
