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


def filled(cache: KVCache, positions: list[int]) -> None:
    """Write position p's value p (+ 100 * row) at every given position, one token at a time."""
    rows = torch.arange(cache.k.shape[0], dtype=torch.float32).view(-1, 1, 1, 1) * 100
    for p in positions:
        value = rows + p
        cache.update(torch.tensor([p]), value.expand(-1, cache.k.shape[1], 1, cache.k.shape[3]), value)


def test_rewind_moves_each_row_by_its_shift():
    cache = KVCache(3, 1, 10, 1)
    filled(cache, list(range(6)))
    cache.rewind(8, torch.tensor([0, 2, -1]))
    k = cache.k[:, 0, :, 0]
    assert k[0, :6].tolist() == [0, 1, 2, 3, 4, 5]  # unmoved
    assert k[1, 2:8].tolist() == [100 + p for p in range(6)]  # row 1: position p now at p + 2
    assert k[2, :5].tolist() == [201, 202, 203, 204, 205]  # row 2: p now at p - 1 (position 0 dropped)
    cache.rewind(3)  # no shift: positions >= 3 are simply overwritten later
    assert cache.key_positions(torch.tensor([3])).tolist() == [0, 1, 2, 3]


def test_rolling_rewind_relabels_slots_and_rotates_rows():
    cache = RollingKVCache(2, 1, 6, 1)  # ring of 6 slots (a window of 4 with 2 slots of slack)
    filled(cache, list(range(9)))  # positions 3..8 in the ring
    cache.rewind(7)  # drop 7 and 8 (rejected drafts): their slots now stand for 1 and 2 (out of any window)
    assert sorted(cache.positions.tolist()) == [1, 2, 3, 4, 5, 6]
    slot = {int(p): s for s, p in enumerate(cache.positions.tolist())}
    assert [float(cache.k[0, 0, slot[p], 0]) for p in (3, 4, 5, 6)] == [3, 4, 5, 6]
    cache.rewind(8, torch.tensor([0, 1]))  # row 1 moves right by one: its position p is now p + 1
    assert sorted(cache.positions.tolist()) == [2, 3, 4, 5, 6, 7]
    slot = {int(p): s for s, p in enumerate(cache.positions.tolist())}
    assert [float(cache.k[1, 0, slot[p], 0]) for p in (4, 5, 6, 7)] == [103, 104, 105, 106]
    assert [float(cache.k[0, 0, slot[p], 0]) for p in (3, 4, 5, 6)] == [3, 4, 5, 6]
    cache.rewind(0)
    assert cache.positions.tolist() == [-1] * 6
