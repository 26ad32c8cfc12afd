"""The viewer page: self-contained (no network), data round-trips, every piece of text escaped."""

import base64
import json
import re

import numpy as np
import pytest
import torch

from tformer.errors import DataError
from tformer.viz import compute_maps, render_html, viewer
from tformer.viz.maps import AttentionMaps, MapSet

EVIL = [
    "</script><script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "a&amp;b",
    "{{DATA}}",
]


def evil_maps() -> AttentionMaps:
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 4, 4) * 3, dim=-1)
    return AttentionMaps([MapSet("self", EVIL, EVIL, [0, 1], [0, 1, 2], w)], 2, 3, "<b>source</b>", None)


def data_block(page: str) -> dict:
    m = re.search(r'<script id="tformer-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_tokens_and_titles_are_escaped():
    page = render_html(evil_maps(), title="<i>title</i>")
    for token in EVIL[:2]:
        assert token not in page
    assert "window.__pwned" in page  # present, but only as escaped data
    assert "<i>title</i>" not in page and "&lt;i&gt;title&lt;/i&gt;" in page
    # exactly the template's two scripts: the data cannot close its element early
    assert page.count("<script") == 2 and page.count("</script>") == 2
    data = data_block(page)
    assert data["sets"][0]["queries"] == EVIL and data["source"] == "<b>source</b>"


def test_weights_round_trip_through_the_page():
    maps = evil_maps()
    data = data_block(render_html(maps))
    s = data["sets"][0]
    assert s["shape"] == [2, 3, 4, 4] and s["layers"] == [0, 1] and s["heads"] == [0, 1, 2]
    raw = np.frombuffer(base64.b64decode(s["weights"]), dtype="<u2").reshape(s["shape"]) / 65535
    np.testing.assert_allclose(raw, maps.sets[0].weights.numpy(), atol=0.5 / 65535 + 1e-9)


def test_the_page_is_self_contained(models, tokenizer):
    page = render_html(compute_maps(models["encoder_decoder"], tokenizer, "The fox", target="le renard"))
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"\b(src|href)\s*=", page)  # nothing to load: no scripts, styles or images by URL
    assert "@import" not in page and "url(" not in page
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert [s["name"] for s in data_block(page)["sets"]] == ["encoder", "decoder", "cross"]


def test_a_page_too_large_for_a_browser_is_refused(monkeypatch):
    monkeypatch.setattr(viewer, "MAX_WEIGHTS", 95)
    with pytest.raises(
        DataError, match=r"the viewer would hold 96 attention weights .* select fewer layers or heads"
    ):
        render_html(evil_maps())
