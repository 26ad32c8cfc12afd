"""Reading training data files with one-line errors that name the file and the line."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from tformer.errors import DataError


def check_files(paths: Sequence[str | Path]) -> list[Path]:
    """The paths as ``Path``s, each an existing, non-empty file.

    Raises:
        DataError: no paths, or a path that is missing, a directory, or empty.
    """
    if not paths:
        raise DataError("no data files given; pass --data PATH")
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"data file {p} does not exist")
        if not p.is_file():
            raise DataError(f"data path {p} is not a file")
        if p.stat().st_size == 0:
            raise DataError(f"data file {p} is empty")
        out.append(p)
    return out


def read_text(path: Path) -> str:
    """The UTF-8 text of a file (a DataError naming the byte offset if it is not UTF-8)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: invalid UTF-8 at byte offset {e.start}; convert the file to UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"data file {path} holds only whitespace")
    return text


def read_records(path: Path, fields: tuple[str, str]) -> list[tuple[str, str]]:
    """Pairs of text fields from a JSONL, CSV or TSV file.

    JSONL (``.jsonl``/``.json``): one object per line with both ``fields``. CSV/TSV with a header row
    naming both fields; or, for a ``.tsv``/``.txt`` file without such a header, two tab-separated columns.

    Raises:
        DataError: a malformed line or missing field (naming the line), or no records at all.
    """
    suffix = path.suffix.lower()
    text = read_text(path)
    if suffix in (".jsonl", ".json"):
        records = _jsonl(path, text, fields)
    elif suffix == ".csv":
        records = _delimited(path, text, fields, ",")
    else:
        records = _delimited(path, text, fields, "\t")
    if not records:
        raise DataError(f"{path} holds no records")
    return records


def _jsonl(path: Path, text: str, fields: tuple[str, str]) -> list[tuple[str, str]]:
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or any(f not in obj for f in fields):
            raise DataError(f"{path}:{n}: expected a JSON object with fields {fields[0]!r} and {fields[1]!r}")
        records.append((str(obj[fields[0]]), str(obj[fields[1]])))
    return records


def _delimited(path: Path, text: str, fields: tuple[str, str], delimiter: str) -> list[tuple[str, str]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV text may hold quotes
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting))
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if all(f in header for f in fields):
        cols = [header.index(f) for f in fields]
        body, first_line = rows[1:], 2
    elif delimiter == "\t" and path.suffix.lower() != ".csv":
        cols, body, first_line = [0, 1], rows, 1
    else:
        raise DataError(f"{path} needs a header row naming the columns {fields[0]!r} and {fields[1]!r}")
    records = []
    for n, row in enumerate(body, first_line):
        if len(row) <= max(cols):
            raise DataError(f"{path}: row {n} has {len(row)} column(s); expected {fields[0]} and {fields[1]}")
        records.append((row[cols[0]], row[cols[1]]))
    return records
