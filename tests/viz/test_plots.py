import matplotlib.image
import torch

from tformer.viz import map_set_statistics
from tformer.viz.maps import MapSet
from tformer.viz.plots import label, plot_grid, plot_head, plot_statistics


def maps(name: str = "self") -> MapSet:
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 5, 6), dim=-1)
    tokens = ["$x$", "\n", " ", "a", "<b>", "c"]
    return MapSet(name, tokens[:5], tokens, [0, 3], [1, 2, 5], w)


def png_shape(path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path).shape


def test_labels_make_whitespace_visible_and_escape_mathtext():
    assert label("$x$") == r"\$x\$" and label("\n") == "\\n" and label(" ") == "' '" and label("ab") == "ab"


def test_grid_head_and_statistics_pngs(tmp_path):
    m = maps()
    plot_grid(m, tmp_path / "grid.png")
    plot_head(m, 3, 5, tmp_path / "head.png")
    plot_statistics([map_set_statistics(m), map_set_statistics(maps("cross"))], tmp_path / "stats.png")
    h, w, _ = png_shape(tmp_path / "grid.png")
    assert w > h  # three heads across, two layers down
    assert min(png_shape(tmp_path / "head.png")[:2]) > 200
    h, w, _ = png_shape(tmp_path / "stats.png")
    assert h > 500 and w > 1000  # two rows of three heatmaps
