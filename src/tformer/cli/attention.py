"""`tformer attention --model DIR --text TEXT [--target TEXT] [--layers 0,3] --out DIR`: look at attention.

Writes into ``--out``:
- ``attention.html``: the offline viewer (every selected layer and head, tokens, overview, cross-attention);
- ``<set>_grid.png``: a layer x head grid per kind of attention (``self``; or ``encoder``, ``decoder``,
  ``cross``), and ``heads/<set>_layer<L>_head<H>.png``: single heads with token labels;
- ``stats.tsv`` / ``stats.png``: entropy, attended distance and first-token share per head, of the text or,
  with ``--stats-file``, of a whole file.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def index_list(text: str) -> list[int]:
    """'0,3,-1' -> [0, 3, -1]; anything else is an argparse error naming the bad piece."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 0,3; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one index, like 0 or 0,3")
    return values


def write_pngs(maps, out: Path, single_heads: bool) -> list[Path]:
    """The grid of every map set and, when asked, each selected head alone."""
    from tformer.viz.plots import plot_grid, plot_head

    written = []
    for s in maps.sets:
        written.append(out / f"{s.name}_grid.png")
        plot_grid(s, written[-1])
        if single_heads:
            for layer in s.layers:
                for head in s.heads:
                    written.append(out / "heads" / f"{s.name}_layer{layer}_head{head}.png")
                    plot_head(s, layer, head, written[-1])
    return written


def run(args: argparse.Namespace) -> int:
    """Compute the maps of ``--text`` and write the HTML viewer, the PNGs and the head statistics."""
    import torch

    import tformer
    from tformer.cli.generate import load_tokenizer_for
    from tformer.viz import compute_maps, file_statistics, map_set_statistics, write_html
    from tformer.viz.plots import plot_statistics
    from tformer.viz.stats import format_table, write_tsv

    tok = load_tokenizer_for(args.model, args.tokenizer)
    model = tformer.from_pretrained(args.model, dtype=torch.float32)
    text = Path(args.text_file).read_text(encoding="utf-8") if args.text_file else args.text
    maps = compute_maps(
        model,
        tok,
        text,
        target=args.target,
        layers=args.layers,
        heads=args.heads,
        max_new_tokens=args.max_new_tokens,
    )
    out = Path(args.out)
    page = write_html(maps, out / "attention.html", title=f"Attention of {Path(args.model).name}")
    pngs = write_pngs(maps, out, single_heads=not args.no_head_pngs)
    if args.stats_file:
        stats = [
            file_statistics(
                model, tok, args.stats_file, layers=args.layers, heads=args.heads, max_chunks=args.max_chunks
            )
        ]
    else:
        stats = [map_set_statistics(s) for s in maps.sets]
    rows = [r for st in stats for r in st.table()]
    write_tsv(rows, out / "stats.tsv")
    plot_statistics(stats, out / "stats.png")
    print(format_table(rows))
    if maps.target_text is not None:
        print(f"target: {maps.target_text}")
    print(f"wrote {page}, {len(pngs)} PNG heatmaps, {out / 'stats.tsv'} and {out / 'stats.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``attention`` command."""
    p = sub.add_parser(
        "attention",
        help="attention heatmaps, head statistics and an offline HTML viewer for a text",
        description="Run a model on a text (and, for encoder-decoder models, a target or its own greedy "
        "output) with the fused attention on, and write PNG heatmaps, per-head statistics and a "
        "self-contained HTML viewer.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (tformer or Hugging Face)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text (an encoder-decoder's source)")
    src.add_argument("--text-file", metavar="F", help="read the text from a UTF-8 file")
    p.add_argument("--target", help="encoder-decoder target text (default: the model's greedy output)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the model directory)")
    p.add_argument("--layers", type=index_list, metavar="I,J", help="layers to show (default all; -1 = last)")
    p.add_argument("--heads", type=index_list, metavar="I,J", help="heads to show (default all)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="length of a generated target")
    p.add_argument("--no-head-pngs", action="store_true", help="write only the grids, not one PNG per head")
    p.add_argument("--stats-file", metavar="F", help="compute the head statistics over this whole file")
    p.add_argument("--max-chunks", type=int, default=None, help="with --stats-file: read at most N windows")
    p.set_defaults(func=run)
