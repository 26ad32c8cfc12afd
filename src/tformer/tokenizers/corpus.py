"""Training text: the lines of text files, read as Hugging Face ``tokenizers`` reads them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tformer.errors import ConfigError, DataError


def iter_lines(paths: str | Path | Iterable[str | Path], errors: str = "strict") -> Iterator[str]:
    """Yield the lines of text files, each with its ``"\\n"``, as HF ``tokenizers`` reads training files.

    Args:
        paths: the files.
        errors: ``"strict"`` raises on invalid UTF-8; ``"replace"`` or ``"ignore"`` as in ``bytes.decode``.

    Raises:
        DataError: a file is missing or unreadable, or (strict) holds invalid UTF-8; the message names the
            file and the byte offset.
    """
    if errors not in ("strict", "replace", "ignore"):
        raise ConfigError(f"errors must be 'strict', 'replace' or 'ignore', got {errors!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        try:
            with open(path, "rb") as f:
                offset = 0
                for raw in f:
                    try:
                        yield raw.decode("utf-8", errors=errors)
                    except UnicodeDecodeError as e:
                        raise DataError(
                            f"{path}: invalid UTF-8 at byte offset {offset + e.start}; "
                            "convert the file to UTF-8 or pass errors='replace'"
                        ) from None
                    offset += len(raw)
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}") from None
