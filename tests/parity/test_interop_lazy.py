"""Lazy tensors compute what the same operations compute on plain tensors, reading only when asked."""

from __future__ import annotations

import pytest
import torch

from tformer.interop.common import fuse_qkv, merge_alias
from tformer.interop.lazy import Concat, InMemory, LazyTensor, Stored, cat, equal
from tformer.io import read_safetensors_header, write_safetensors


@pytest.fixture
def stored(tmp_path) -> tuple[dict[str, Stored], dict[str, torch.Tensor]]:
    """Lazy leaves over a file, and the plain tensors it holds."""
    g = torch.Generator().manual_seed(0)
    plain = {
        "w": torch.randn(6, 4, generator=g),
        "q": torch.randn(4, 4, generator=g).to(torch.bfloat16),
        "k": torch.randn(2, 4, generator=g).to(torch.bfloat16),
        "v": torch.randn(2, 4, generator=g).to(torch.bfloat16),
        "experts": torch.randn(3, 8, 4, generator=g),
    }
    write_safetensors(tmp_path / "t.safetensors", plain)
    lazy = {n: Stored(s) for n, s in read_safetensors_header(tmp_path / "t.safetensors").items()}
    return lazy, plain


def _materialised(x: LazyTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=dtype or x.dtype)
    x.write_into(out)
    return out


@pytest.mark.parametrize("mmap", [True, False])
def test_view_operations_match_eager(stored, mmap):
    lazy, plain = stored
    w, e = Stored(lazy["w"].stored, mmap), Stored(lazy["experts"].stored, mmap)
    cases = [
        (w.t().contiguous(), plain["w"].t()),  # GPT-2's Conv1D transpose
        (w.reshape(-1), plain["w"].reshape(-1)),
        (w.transpose(0, 1).reshape(2, 12), plain["w"].transpose(0, 1).reshape(2, 12)),
        (w.narrow(0, 1, 3), plain["w"].narrow(0, 1, 3)),
        (e[1], plain["experts"][1]),
        (e[2].chunk(2, dim=0)[1], plain["experts"][2].chunk(2, dim=0)[1]),  # Mixtral's fused gate/up
    ]
    for got, want in cases:
        assert got.shape == want.shape and got.dtype == want.dtype
        assert torch.equal(got.tensor(), want) and torch.equal(_materialised(got), want)
        assert torch.equal(_materialised(got, torch.float64), want.double())  # cast while writing


def test_cat_writes_each_part_into_its_slice(stored):
    lazy, plain = stored
    fused = cat([lazy["q"], lazy["k"], lazy["v"]])
    want = torch.cat([plain["q"], plain["k"], plain["v"]])
    assert isinstance(fused, Concat) and fused.shape == want.shape and fused.dtype == torch.bfloat16
    assert torch.equal(_materialised(fused), want) and torch.equal(fused.tensor(), want)
    assert torch.equal(_materialised(fused, torch.float32), want.float())
    # along another dim, and mixing an in-memory part (promoted like torch.cat)
    extra = torch.ones(4, 2, dtype=torch.float64)
    mixed = cat([lazy["q"], InMemory(extra)], dim=1)
    assert mixed.dtype == torch.float64
    assert torch.equal(_materialised(mixed), torch.cat([plain["q"], extra], dim=1))
    negative = cat([lazy["q"], InMemory(extra)], dim=-1)
    assert torch.equal(_materialised(negative), torch.cat([plain["q"], extra], dim=-1))
    assert isinstance(cat([plain["q"], plain["k"]]), torch.Tensor)  # plain in, plain out
    with pytest.raises(ValueError, match=r"cannot concatenate shapes \(4, 4\), \(6, 4\) along dim 1"):
        Concat([lazy["q"], lazy["w"]], dim=1)


def test_converter_helpers_run_on_lazy_tensors(stored):
    lazy, plain = stored
    src = {"l.0.q.weight": lazy["q"], "l.0.k.weight": lazy["k"], "l.0.v.weight": lazy["v"]}
    out = fuse_qkv(src, 1, "l.{i}.{p}", "l.{i}.qkv")
    assert torch.equal(out["l.0.qkv.weight"].tensor(), torch.cat([plain["q"], plain["k"], plain["v"]]))
    assert equal(lazy["w"], plain["w"]) and not equal(lazy["w"], plain["w"] + 1)
    assert not equal(lazy["q"], lazy["k"])  # shapes differ: nothing read
    merged = merge_alias({"shared": lazy["w"], "alias": InMemory(plain["w"].clone())}, "alias", "shared")
    assert list(merged) == ["shared"]
