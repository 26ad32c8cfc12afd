"""Printing for the benchmark scripts: a Markdown table, flushed row by row (long runs show progress)."""

from __future__ import annotations


def table(title: str | None, header: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    """Print a blank line and ``title`` (if any), then ``header`` and ``rows`` as a Markdown table, then
    ``caption`` (the scripts pass ``Machine.caption()``: the CPU and the peaks measured in the run)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}" if title else "")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |", flush=True)
    if caption:
        print(caption, flush=True)
