"""block_sparse (BigBird) attention: the layout has BigBird's shape, and the gathered computation equals exact
attention under the layout's boolean mask."""

import pytest
import torch

import tformer
from tformer.nn.attention_kinds import BlockSparseAttention, MaskSpec, block_layout

from .helpers import LargestTensor, assert_rows_close, exact_with_mask, padding_mask, qkv


def layout_mask(layout: torch.Tensor, b: int, T: int, causal: bool, real: torch.Tensor) -> torch.Tensor:
    """The block layout expanded to tokens (B, 1, T, T), causal within blocks, padding keys hidden."""
    allowed = torch.kron(layout.int(), torch.ones(b, b, dtype=torch.int))[:T, :T].bool()
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
    return (allowed[None] & real.bool()[:, None, :])[:, None]


def test_layout_has_window_global_and_r_random_blocks():
    nb, w, g, r = 12, 1, 2, 3
    layout = block_layout(nb, w, g, r, 7, False)
    assert layout[:g].all() and layout[:, :g].all()  # global blocks see and are seen by everything
    for i in range(g, nb):
        window = {j for j in range(nb) if abs(i - j) <= w}
        others = set(layout[i].nonzero().flatten().tolist()) - window - set(range(g))
        assert window <= set(layout[i].nonzero().flatten().tolist())
        assert len(others) == r  # exactly r random blocks beyond window and globals
    assert torch.equal(layout, block_layout(nb, w, g, r, 7, False))  # deterministic for a seed
    assert not torch.equal(layout, block_layout(nb, w, g, r, 8, False))


def test_causal_layout_looks_back_only_and_rows_do_not_depend_on_length():
    short, long = block_layout(10, 1, 1, 2, 0, True), block_layout(30, 1, 1, 2, 0, True)
    assert not short.triu(1).any()
    assert torch.equal(long[:10, :10], short)  # cached decoding sees the same pattern as the full pass


def test_blocks_per_row_do_not_grow_with_length():
    for nb in (16, 64, 256):
        rows = block_layout(nb, 1, 1, 2, 0, False)[1:]
        assert int(rows.sum(-1).max()) <= 3 + 1 + 2


CASES = [  # T, block, window, global, random, heads, kv heads, lengths
    (32, 4, 1, 1, 2, 2, 2, [32, 32]),
    (37, 4, 1, 1, 2, 4, 2, [37, 29]),  # T not a multiple of the block, GQA, padding
    (50, 5, 2, 2, 1, 2, 1, [50, 41]),
    (8, 4, 1, 3, 2, 2, 2, [8, 5]),  # every block global: dense
    (24, 3, 0, 0, 0, 2, 2, [24, 20]),  # diagonal blocks only
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T, b, w, g, r, H, Hkv, lengths", CASES)
def test_equals_exact_attention_with_the_layout_mask(causal, T, b, w, g, r, H, Hkv, lengths):
    q, k, v = qkv(len(lengths), H, Hkv, T, 8, seed=T + b)
    real = padding_mask(lengths, T)
    attn = BlockSparseAttention(block_size=b, window_blocks=w, global_blocks=g, random_blocks=r, seed=3)
    spec = MaskSpec.build(torch.arange(T), torch.arange(T), real)
    ours = attn(q, k, v, mask=spec, is_causal=causal, scale=0.35)
    allowed = layout_mask(attn.layout(-(-T // b), causal), b, T, causal, real)
    assert_rows_close(ours, exact_with_mask(q, k, v, allowed, 0.35), allowed)


def test_memory_is_linear_in_length():
    T, H, D = 2048, 2, 8
    q, k, v = qkv(1, H, H, T, D)
    with LargestTensor() as probe:
        BlockSparseAttention(block_size=32, window_blocks=1, global_blocks=1, random_blocks=2)(
            q, k, v, scale=0.3
        )
    assert probe.numel <= H * T * 6 * 32, probe.numel  # (T, K b) scores with K = 6 blocks
    assert probe.numel < H * T * T / 10


def test_decoder_cached_decoding_equals_the_full_pass():
    torch.manual_seed(0)
    params = {"block_size": 3, "window_blocks": 1, "global_blocks": 1, "random_blocks": 1}
    model = tformer.build("gpt-tiny", attention_kind="block_sparse", attention_params=params).eval()
    ids = torch.randint(0, 512, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_caches(2, 20)
        prefill = model(ids[:, :7], input_pos=torch.arange(7)).logits
        steps = [model(ids[:, t : t + 1], input_pos=torch.tensor([t])).logits for t in range(7, 20)]
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), full, rtol=1e-5, atol=1e-5)


def test_global_tokens_are_refused():
    spec = MaskSpec.build(torch.arange(4), torch.arange(4), None, torch.tensor([[1, 0, 0, 0]]))
    q, k, v = qkv(1, 2, 2, 4, 8)
    with pytest.raises(ValueError, match="has no global tokens"):
        BlockSparseAttention(block_size=2)(q, k, v, mask=spec, scale=1.0)
