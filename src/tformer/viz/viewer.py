"""The offline attention viewer: one HTML file with its style, script and data inline.

The template, style and script are real files under ``assets/`` (package data). The page needs no network
(its Content-Security-Policy forbids any fetch) and works opened from a file. Text is escaped twice over:
the title through ``html.escape``, the data as JSON whose ``<``, ``>`` and ``&`` are written as ``\\u003c``
(so ``</script>`` in a token cannot end the data block), and the script only ever sets ``textContent``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tformer.errors import DataError
from tformer.io import atomic_write
from tformer.viz.maps import AttentionMaps, MapSet

_PLACEHOLDER = re.compile(r"\{\{(TITLE|STYLE|SCRIPT|DATA)\}\}")
#: weights one page may hold: 2 bytes each, base64 -> about 43 MiB of HTML, which browsers still open quickly
MAX_WEIGHTS = 16_000_000


def asset(name: str) -> str:
    """The text of one file under ``tformer/viz/assets``."""
    return resources.files("tformer.viz").joinpath("assets", name).read_text(encoding="utf-8")


def encode_weights(weights: Any) -> str:
    """(L, h, T, S) probabilities in [0, 1] -> base64 of little-endian uint16 (value * 65535, rounded)."""
    q = np.rint(np.clip(np.asarray(weights, dtype=np.float64), 0.0, 1.0) * 65535).astype("<u2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def set_data(maps: MapSet) -> dict[str, Any]:
    """One map set as the viewer's JSON."""
    return {
        "name": maps.name,
        "title": maps.title,
        "queries": maps.query_tokens,
        "keys": maps.key_tokens,
        "layers": maps.layers,
        "heads": maps.heads,
        "shape": list(maps.weights.shape),
        "weights": encode_weights(maps.weights.numpy()),
    }


def script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` characters survive literally."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(maps: AttentionMaps, title: str = "tformer attention") -> str:
    """The complete viewer page for ``maps``.

    Raises:
        DataError: more than ``MAX_WEIGHTS`` weights in all (a page a browser would choke on).
    """
    total = sum(s.weights.numel() for s in maps.sets)
    if total > MAX_WEIGHTS:
        raise DataError(
            f"the viewer would hold {total:,} attention weights (about {total * 8 // 3 // 2**20} MiB); select "
            f"fewer layers or heads (--layers, --heads) or a shorter text to stay under {MAX_WEIGHTS:,}"
        )
    data = {
        "source": maps.source_text,
        "target": maps.target_text,
        "nLayers": maps.n_layers,
        "nHeads": maps.n_heads,
        "sets": [set_data(s) for s in maps.sets],
    }
    parts = {
        "TITLE": html.escape(title),
        "STYLE": asset("viewer.css"),
        "SCRIPT": asset("viewer.js"),
        "DATA": script_json(data),
    }
    # one pass, so a placeholder spelled inside the data or the script is never substituted again
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], asset("viewer.html"))


def write_html(maps: AttentionMaps, path: str | Path, title: str = "tformer attention") -> Path:
    """Write the viewer page atomically; returns its path."""
    page = render_html(maps, title)
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return Path(path)
