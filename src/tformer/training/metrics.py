"""Run metrics: one JSON object per line in ``metrics.jsonl``, and a loss-curve PNG drawn from it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tformer.io import atomic_write


class MetricsLog:
    """Append-only JSONL of training and evaluation rows, each with its ``step``.

    Training rows have ``split: "train"``; evaluation rows ``split: "val"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row as a line of JSON (the directory is created when missing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        """Every row logged so far, in order; a line cut short by a crash is skipped."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        return out

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (by a run that stopped before its next checkpoint)."""
        if not self.path.is_file():
            return
        kept = [r for r in self.rows() if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def plot_losses(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Training loss (and validation loss, when logged) against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if r.get("split") == "train" and _finite(r.get("loss"))]
    val = [(r["step"], r["loss"]) for r in rows if r.get("split") == "val" and _finite(r.get("loss"))]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
