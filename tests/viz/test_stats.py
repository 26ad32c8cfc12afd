import math

import pytest
import torch

from tformer.errors import DataError
from tformer.viz import compute_maps, file_statistics, map_set_statistics
from tformer.viz.stats import HeadStatistics, format_table, row_statistics, write_tsv


def test_row_statistics_by_hand():
    # row 0: uniform over 4 keys; row 1: all on key 0; row 2: half on key 1, half on key 3 (query 2)
    w = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.5]])
    stats = row_statistics(w[None], self_attention=True)[0]  # queries sit at keys 1, 2, 3 (a key prefix)
    torch.testing.assert_close(stats[:, 0], torch.tensor([math.log(4), 0.0, math.log(2)]))
    torch.testing.assert_close(stats[:, 1], torch.tensor([(1 + 0 + 1 + 2) / 4, 2.0, (2 + 0) / 2]))
    torch.testing.assert_close(stats[:, 2], torch.tensor([0.25, 1.0, 0.0]))
    cross = row_statistics(w, self_attention=False)
    assert torch.isnan(cross[:, 1]).all() and torch.equal(cross[:, 0], stats[:, 0])


def test_text_statistics_average_every_row(models, tokenizer):
    maps = compute_maps(models["encoder_decoder"], tokenizer, "The quick brown fox", target="le renard")
    tables = {s.name: map_set_statistics(s) for s in maps.sets}
    enc = maps.get("encoder")
    means = tables["encoder"].means()
    assert means.shape == (2, 4, 3)
    w = enc.weights[1, 2]  # layer 1, head 2: (T, S)
    entropy = -(w * w.clamp_min(1e-30).log()).sum(-1).mean()
    torch.testing.assert_close(means[1, 2, 0], entropy, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(means[1, 2, 2], w[:, 0].mean())
    rows = tables["cross"].table()
    assert len(rows) == 8 and rows[0]["set"] == "cross" and math.isnan(rows[0]["distance"])
    text = format_table(rows)
    assert text.splitlines()[0].split() == ["set", "layer", "head", "entropy", "distance", "first"]
    assert len(text.splitlines()) == 9 and " - " in text


def test_file_statistics_equal_the_mean_over_its_windows(models, tokenizer, tmp_path):
    model = models["decoder"]
    text = "The quick brown fox jumps over the lazy dog. " * 12
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    stats = file_statistics(model, tokenizer, path, heads=[1])
    ids = tokenizer.encode_ordinary(text)
    windows = [ids[i : i + 48] for i in range(0, len(ids), 48)]
    assert len(windows) >= 3
    expected = HeadStatistics("self", [0, 1], [1])
    with torch.no_grad():
        for win in windows:
            maps = model(torch.tensor([win]), output_attentions=True, heads=[1]).attentions
            expected.add(torch.stack([m[0] for m in maps]), self_attention=True)
    assert stats.rows == len(ids) and stats.layers == [0, 1] and stats.heads == [1]
    torch.testing.assert_close(stats.means(), expected.means())
    limited = file_statistics(model, tokenizer, path, max_chunks=1)
    assert limited.rows == 48
    write_tsv(stats.table(), tmp_path / "s.tsv")
    lines = (tmp_path / "s.tsv").read_text().splitlines()
    assert lines[0] == "set\tlayer\thead\tentropy\tdistance\tfirst_token" and len(lines) == 3


def test_file_statistics_errors(models, tokenizer, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        file_statistics(models["decoder"], tokenizer, tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no text"):
        file_statistics(models["decoder"], tokenizer, tmp_path / "empty.txt")
