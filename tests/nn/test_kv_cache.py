import torch

from tformer.nn.kv_cache import KVCache, RollingKVCache


def test_kv_cache_writes_in_place_and_returns_prefix():
    cache = KVCache(1, 2, 8, 4)
    k_ptr = cache.k.data_ptr()
    k = torch.randn(1, 2, 3, 4)
    k_all, v_all = cache.update(torch.arange(3), k, k * 2)
    assert k_all.shape == (1, 2, 3, 4) and torch.equal(k_all, k) and torch.equal(v_all, 2 * k)
    k_all, _ = cache.update(torch.tensor([3]), torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    assert k_all.shape[2] == 4 and cache.k.data_ptr() == k_ptr  # preallocated: no reallocation
    assert cache.key_positions(torch.tensor([4])).tolist() == [0, 1, 2, 3, 4]
    assert cache.nbytes() == 2 * 1 * 2 * 8 * 4 * 4


def test_kv_cache_rejects_positions_past_its_end():
    import pytest

    with pytest.raises(ValueError, match="max_seq_len=8"):
        KVCache(1, 1, 8, 2).key_positions(torch.tensor([8]))


def test_rolling_cache_keeps_last_window():
    cache = RollingKVCache(1, 1, 3, 1)
    val = lambda ps: torch.tensor(ps, dtype=torch.float32).view(1, 1, -1, 1)  # noqa: E731
    # a prefill chunk longer than the window: attends over old slots + chunk, keeps the last 3
    pos = torch.arange(5)
    assert cache.key_positions(pos).tolist() == [-1, -1, -1, 0, 1, 2, 3, 4]
    k_all, _ = cache.update(pos, val(range(5)), val(range(5)))
    assert k_all.shape[2] == 8
    assert sorted(cache.positions.tolist()) == [2, 3, 4]
    # single steps overwrite the oldest slot
    assert sorted(cache.key_positions(torch.tensor([5])).tolist()) == [3, 4, 5]
    k_all, _ = cache.update(torch.tensor([5]), val([5]), val([5]))
    assert sorted(k_all.flatten().tolist()) == [3.0, 4.0, 5.0]
    cache.reset()
    assert cache.positions.tolist() == [-1, -1, -1]


def test_reorder_selects_rows():
    cache = KVCache(3, 1, 2, 1)
    cache.update(torch.tensor([0]), torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [3.0, 3.0, 1.0]
