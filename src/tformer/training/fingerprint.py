"""A fingerprint of the data a run trains on, so that ``--resume`` notices when the data changed.

Each file is identified by its size and a SHA-256: of the whole content for files up to
``FULL_HASH_LIMIT`` (64 MiB), else of ``SAMPLES`` evenly spaced blocks of ``SAMPLE_BYTES`` (the first and the
last included), which reads 4 MiB whatever the size. A sampled hash can miss an edit between its blocks
that keeps the size (a same-length in-place change); the record says which kind it is (``"hashed"``).
Paths are not part of the identity: the same content moved elsewhere is the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FULL_HASH_LIMIT = 64 * 2**20
SAMPLES = 64
SAMPLE_BYTES = 64 * 2**10


def file_fingerprint(path: Path) -> dict[str, Any]:
    """``{"path", "size", "sha256", "hashed": "all" | "sampled"}`` of one file."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
            hashed = "all"
        else:
            last = size - SAMPLE_BYTES
            for i in range(SAMPLES):
                f.seek(last * i // (SAMPLES - 1))
                h.update(f.read(SAMPLE_BYTES))
            hashed = f"sampled ({SAMPLES} blocks of {SAMPLE_BYTES // 1024} KiB)"
    return {"path": str(path.resolve()), "size": size, "sha256": h.hexdigest(), "hashed": hashed}


def data_fingerprint(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The fingerprints of a run's data files, in order.

    A source that is not a file (a folder of images, a named data set such as ``digits``) is recorded by
    name only: nothing to hash, so a resume compares its name alone.
    """
    return [
        file_fingerprint(Path(p))
        if Path(p).is_file()
        else {"path": str(p), "size": -1, "sha256": "", "hashed": "not a file: compared by name"}
        for p in paths
    ]


def _identity(fp: dict[str, Any]) -> tuple[int, str]:
    return (fp["size"], fp["sha256"]) if fp["size"] >= 0 else (-1, Path(fp["path"]).name)


def describe_change(recorded: list[dict[str, Any]], current: list[dict[str, Any]]) -> str | None:
    """None when ``current`` is the recorded data (same files' content, in order); else what differs."""
    if [_identity(f) for f in recorded] == [_identity(f) for f in current]:
        return None
    if len(recorded) != len(current):
        return f"the run was trained on {len(recorded)} data file(s), this resume gives {len(current)}"
    for old, new in zip(recorded, current):
        if _identity(old) != _identity(new):
            return (
                f"{new['path']} ({new['size']:,} bytes, sha256 {new['sha256'][:12]}) is not the data the run "
                f"was trained on ({old['path']}: {old['size']:,} bytes, sha256 {old['sha256'][:12]}, "
                f"hashed: {old['hashed']})"
            )
    return None  # pragma: no cover - identities differ, so some pair differs
