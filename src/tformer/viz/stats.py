"""Per-head attention statistics: what each head does, in three numbers, for a text or a whole file.

For every query row p (a distribution over the S keys), averaged over the rows seen:
- ``entropy``: -sum_k p_k ln p_k in nats (0 = one key; ln S = uniform);
- ``distance``: sum_k p_k |q - k|, the mean attended distance in tokens (self-attention only);
- ``first_token``: p_0, the share of attention on the first key (a "sink" head puts most of it there).
Shapes: L layers, h heads, T queries, S keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tformer.errors import DataError
from tformer.io import atomic_write
from tformer.viz.maps import MapSet, selected_heads

STATS = ("entropy", "distance", "first_token")
STAT_TITLES = {
    "entropy": "entropy (nats)",
    "distance": "mean attended distance (tokens)",
    "first_token": "share on the first token",
}


def row_statistics(weights: torch.Tensor, self_attention: bool) -> torch.Tensor:
    """(..., T, S) probabilities -> (..., T, 3): entropy, attended distance (NaN for cross), first share."""
    T, S = weights.shape[-2:]
    w = weights.float()
    entropy = -torch.special.xlogy(w, w).sum(-1)  # 0 log 0 = 0
    if self_attention:
        # queries and keys are the same sequence; with a key prefix (S > T) query i sits at key S - T + i
        q = torch.arange(S - T, S, dtype=torch.float32)[:, None]
        distance = (w * (q - torch.arange(S, dtype=torch.float32)).abs()).sum(-1)
    else:
        distance = torch.full_like(entropy, math.nan)
    return torch.stack([entropy, distance, w[..., 0]], dim=-1)


@dataclass
class HeadStatistics:
    """Running sums of the per-row statistics of one map set; ``table()`` gives the means."""

    name: str
    layers: list[int]
    heads: list[int]
    sums: torch.Tensor | None = None  # (L, h, 3)
    rows: int = 0

    def add(self, weights: torch.Tensor, self_attention: bool) -> None:
        """Add the rows of (L, h, T, S) maps."""
        per_row = row_statistics(weights, self_attention).sum(dim=-2)  # (L, h, 3)
        self.sums = per_row if self.sums is None else self.sums + per_row
        self.rows += weights.shape[-2]

    def means(self) -> torch.Tensor:
        """(L, h, 3) averages over every row added."""
        if not self.rows:
            raise DataError("no attention rows were added; nothing to average")
        return self.sums / self.rows

    def table(self) -> list[dict[str, Any]]:
        """One row per (layer, head): set, layer, head and the three statistics."""
        means = self.means()
        return [
            {"set": self.name, "layer": layer, "head": head, **dict(zip(STATS, means[i, j].tolist()))}
            for i, layer in enumerate(self.layers)
            for j, head in enumerate(self.heads)
        ]


def map_set_statistics(maps: MapSet) -> HeadStatistics:
    """Statistics of one text's map set."""
    stats = HeadStatistics(maps.name, maps.layers, maps.heads)
    stats.add(maps.weights, maps.is_self)
    return stats


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of ``HeadStatistics.table()`` rows."""
    lines = [f"{'set':<8} {'layer':>5} {'head':>4} {'entropy':>8} {'distance':>9} {'first':>6}"]
    for r in rows:
        distance = "-" if math.isnan(r["distance"]) else f"{r['distance']:.2f}"
        lines.append(
            f"{r['set']:<8} {r['layer']:>5} {r['head']:>4} {r['entropy']:>8.3f} {distance:>9} "
            f"{r['first_token']:>6.3f}"
        )
    return "\n".join(lines)


def write_tsv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Tab-separated rows with a header (``nan`` where a statistic is undefined)."""
    header = ["set", "layer", "head", *STATS]
    text = "\t".join(header) + "\n"
    text += "".join(
        "\t".join(f"{r[k]:.6g}" if k in STATS else str(r[k]) for k in header) + "\n" for r in rows
    )
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive windows of at most ``size`` ids (the last may be shorter)."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@torch.no_grad()
def file_statistics(
    model: Any,
    tokenizer: Any,
    path: str | Path,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_chunks: int | None = None,
) -> HeadStatistics:
    """Statistics of the stack that reads text (the decoder of a decoder-only model, else the encoder)
    over a whole UTF-8 file: its tokens as they are (no framing tokens), in consecutive windows of the
    model's context (at most ``max_chunks`` of them)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"statistics file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    cfg = model.config
    ids = tokenizer.encode_ordinary(text)
    if not ids:
        raise DataError(f"{path} holds no text to read")
    model.eval()
    name = "self" if cfg.arch != "encoder_decoder" else "encoder"
    stats = HeadStatistics(name, [], selected_heads(cfg.n_heads, heads))
    for n, window in enumerate(chunks(ids, cfg.max_seq_len)):
        if max_chunks is not None and n >= max_chunks:
            break
        maps = _chunk_maps(model, window, layers, heads)
        stats.layers = [i for i, w in enumerate(maps) if w is not None]
        stats.add(torch.stack([w[0].float() for w in maps if w is not None]), self_attention=True)
    return stats


def _chunk_maps(model: Any, window: list[int], layers, heads) -> tuple:
    """Self-attention maps of the reading stack for one window of ids."""
    cfg = model.config
    device = next(model.parameters()).device
    ids = torch.tensor([window], device=device)
    opts = dict(output_attentions=True, attention_layers=layers, heads=heads)
    if cfg.arch != "encoder_decoder":
        return model(ids, **opts).attentions
    start = torch.tensor([[cfg.decoder_start_token_id or 0]], device=device)
    return model(ids, decoder_input_ids=start, **opts).encoder_attentions
