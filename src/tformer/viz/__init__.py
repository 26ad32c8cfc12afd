"""Seeing inside a model: attention maps of a text, per-head statistics, PNG heatmaps and an offline viewer.

- ``maps``: run a model once (fused attention on) and collect its maps with token labels;
- ``stats``: entropy, attended distance and first-token share per head, for a text or a whole file;
- ``plots``: PNG heatmaps (imports matplotlib, so it is not imported here);
- ``viewer``: the self-contained HTML viewer (its template, style and script live in ``assets/``).
"""

from tformer.viz.maps import AttentionMaps, MapSet, compute_maps
from tformer.viz.stats import HeadStatistics, file_statistics, map_set_statistics
from tformer.viz.viewer import render_html, write_html

__all__ = [
    "AttentionMaps",
    "HeadStatistics",
    "MapSet",
    "compute_maps",
    "file_statistics",
    "map_set_statistics",
    "render_html",
    "write_html",
]
