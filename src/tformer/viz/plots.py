"""PNG heatmaps of attention maps and head statistics (matplotlib's object API: no global pyplot state).

- ``plot_grid``: every selected layer x head of one map set, small and unlabelled, for the overview;
- ``plot_head``: one head with its token labels (keys across, queries down; for cross-attention the source
  across and the target down);
- ``plot_statistics``: each statistic as a layer x head heatmap, one row per map set.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from tformer.io import atomic_write
from tformer.viz.maps import MapSet
from tformer.viz.stats import STAT_TITLES, STATS, HeadStatistics

CMAP = "viridis"


def label(token: str) -> str:
    """A token as an axis label: whitespace made visible, mathtext's ``$`` escaped."""
    shown = token.replace("\n", "\\n").replace("\t", "\\t").replace("$", r"\$")
    return shown if shown.strip() else repr(token)


def _save(fig: Figure, path: str | Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_grid(maps: MapSet, path: str | Path) -> None:
    """A layer x head grid of small heatmaps (rows: layers, columns: heads)."""
    L, h = len(maps.layers), len(maps.heads)
    cell = 1.6 if max(L, h) <= 8 else 1.0
    fig = Figure(figsize=(0.6 + cell * h, 0.6 + cell * L), dpi=100)
    axes = fig.subplots(L, h, squeeze=False)
    for i, layer in enumerate(maps.layers):
        for j, head in enumerate(maps.heads):
            ax = axes[i][j]
            ax.imshow(maps.weights[i, j].numpy(), cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle(maps.title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_head(maps: MapSet, layer: int, head: int, path: str | Path) -> None:
    """One head's map with token labels; ``layer`` and ``head`` are the model's indices."""
    i, j = maps.layers.index(layer), maps.heads.index(head)
    T, S = len(maps.query_tokens), len(maps.key_tokens)
    side = 0.22
    fig = Figure(figsize=(2.5 + side * S, 2.0 + side * T), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(maps.weights[i, j].numpy(), cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(S), [label(t) for t in maps.key_tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(T), [label(t) for t in maps.query_tokens], fontsize=7)
    ax.set_xlabel("source (keys)" if maps.name == "cross" else "keys (attended to)")
    ax.set_ylabel("target (queries)" if maps.name == "cross" else "queries (attending)")
    ax.set_title(f"{maps.title}: layer {layer}, head {head}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    _save(fig, path)


def plot_statistics(stats: list[HeadStatistics], path: str | Path) -> None:
    """Entropy, attended distance and first-token share as layer x head heatmaps, one row per map set."""
    fig = Figure(figsize=(13, 0.8 + 3.2 * len(stats)), dpi=100)
    axes = fig.subplots(len(stats), len(STATS), squeeze=False)
    for row, st in enumerate(stats):
        means = st.means()  # (L, h, 3)
        for col, stat in enumerate(STATS):
            ax = axes[row][col]
            values = means[..., col]
            if bool(torch.isnan(values).all()):
                ax.axis("off")
                ax.text(0.5, 0.5, f"{st.name}: {stat}\nnot defined", ha="center", va="center")
                continue
            image = ax.imshow(values.numpy(), cmap=CMAP, aspect="auto", interpolation="nearest")
            ax.set_xticks(range(len(st.heads)), [str(h) for h in st.heads], fontsize=7)
            ax.set_yticks(range(len(st.layers)), [str(layer) for layer in st.layers], fontsize=7)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            ax.set_title(f"{st.name}: {STAT_TITLES[stat]}", fontsize=9)
            fig.colorbar(image, ax=ax)
            if values.numel() <= 64:  # small grids: print the values in the cells
                _annotate(ax, values)
    fig.tight_layout()
    _save(fig, path)


def _annotate(ax, values: torch.Tensor) -> None:
    """Write each cell's value on it, dark on the bright end of the colour map and light elsewhere."""
    lo, hi = float(values.nan_to_num(math.inf).min()), float(values.nan_to_num(-math.inf).max())
    for li in range(values.shape[0]):
        for hj in range(values.shape[1]):
            v = float(values[li, hj])
            if math.isnan(v):
                continue
            bright = hi > lo and v - lo > 0.6 * (hi - lo)
            ax.text(hj, li, f"{v:.2f}", ha="center", va="center", fontsize=6, color="k" if bright else "w")
