"""Tokenizer files: GPT-2's vocab.json + merges.txt, BERT's vocab.txt, tformer's versioned JSON, text data.

tformer's own format is one JSON file, ``tformer_tokenizer.json``::

    {"format": "tformer-tokenizer", "version": 1, "type": "byte_bpe" | "wordpiece" | "char",
     "special_tokens": {token: id}, "roles": {"eos": token, ...}, ...type-specific fields}

Every reader turns a malformed file into a one-line ConfigError naming the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.base import Tokenizer
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.tokenizers.pretokenize import bytes_to_token, pattern_name, token_to_bytes

TFORMER_FILE = "tformer_tokenizer.json"
FORMAT_NAME = "tformer-tokenizer"
FORMAT_VERSION = 1


# ---- training text ----------------------------------------------------------------------------------
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


# ---- GPT-2 files ------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def read_vocab_json(path: str | Path) -> dict[str, int]:
    """Read GPT-2's ``vocab.json`` / ``encoder.json``: a JSON object of token string -> id."""
    path = Path(path)
    vocab = _read_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise ConfigError(f"{path}: expected a non-empty JSON object mapping token strings to ids")
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ConfigError(f"{path}: token {token!r} has id {i!r}; ids must be non-negative integers")
    return vocab


def read_merges_txt(path: str | Path) -> list[tuple[str, str]]:
    """Read GPT-2's ``merges.txt`` / ``vocab.bpe``: an optional ``#version`` line, then ``left right``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start})") from None
    merges = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ConfigError(
                f"{path} line {lineno}: expected two tokens separated by one space, got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    return merges


def bpe_from_gpt2_files(vocab_path: str | Path, merges_path: str | Path) -> ByteLevelBPETokenizer:
    """Build a tokenizer from GPT-2-format files; vocab entries that no merge produces and that are not
    single bytes (GPT-2's ``<|endoftext|>``) become special tokens."""
    vocab = read_vocab_json(vocab_path)
    merges = read_merges_txt(merges_path)
    produced = set()
    for lineno, (a, b) in enumerate(merges, start=1):
        for token in (a, b, a + b):
            if token not in vocab:
                raise ConfigError(
                    f"{merges_path}: merge {lineno} ({a} {b}) needs {token!r}, missing from {vocab_path}"
                )
        produced.add(a + b)
    ordinary: dict[bytes, int] = {}
    special: dict[str, int] = {}
    for token, i in vocab.items():
        data = token_to_bytes(token)
        if data is not None and (len(data) == 1 or token in produced):
            ordinary[data] = i
        else:
            special[token] = i
    byte_merges = [(token_to_bytes(a), token_to_bytes(b)) for a, b in merges]
    try:
        return ByteLevelBPETokenizer(ordinary, byte_merges, special)  # type: ignore[arg-type]
    except ConfigError as e:
        raise ConfigError(f"{vocab_path}: {e}") from None


def write_gpt2_files(tok: ByteLevelBPETokenizer, directory: Path) -> None:
    """Write ``vocab.json`` (special tokens included) and ``merges.txt`` in GPT-2/HF layout."""
    entries = {bytes_to_token(t): i for t, i in tok.vocab.items()}
    entries.update(tok.special_tokens)
    ordered = dict(sorted(entries.items(), key=lambda kv: kv[1]))
    (directory / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{bytes_to_token(a)} {bytes_to_token(b)}" for a, b in tok.merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- tformer format ---------------------------------------------------------------------------------
def write_tformer_file(tok: Tokenizer, kind: str, fields: dict[str, Any], directory: str | Path) -> Path:
    """Write ``tformer_tokenizer.json`` with the common header and ``fields``; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "type": kind,
        "special_tokens": tok.special_tokens,
        "roles": tok.roles,
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        **fields,
    }
    (directory / TFORMER_FILE).write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return directory


def save_bpe(tok: ByteLevelBPETokenizer, directory: str | Path) -> Path:
    """Save a byte-level BPE tokenizer: tformer's file plus GPT-2's two files."""
    fields = {
        "pattern": pattern_name(tok.pattern),
        "vocab": {bytes_to_token(t): i for t, i in sorted(tok.vocab.items(), key=lambda kv: kv[1])},
        "merges": [f"{bytes_to_token(a)} {bytes_to_token(b)}" for a, b in tok.merges],
    }
    out = write_tformer_file(tok, "byte_bpe", fields, directory)
    write_gpt2_files(tok, out)
    return out


def read_tformer_file(path: str | Path) -> Tokenizer:
    """Read tformer's ``tformer_tokenizer.json`` into the tokenizer it describes."""
    path = Path(path)
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ConfigError(f'{path}: not a tformer tokenizer file (no "format": "{FORMAT_NAME}")')
    if doc.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: tokenizer format version {doc.get('version')!r} is not supported (expected 1)"
        )
    try:
        tok = _from_doc(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        msg = f"missing field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed tokenizer file: {msg}") from None
    tok.padding_side = doc.get("padding_side", "right")
    tok.truncation_side = doc.get("truncation_side", "right")
    return tok


def _from_doc(doc: dict[str, Any]) -> Tokenizer:
    kind = doc["type"]
    if kind == "byte_bpe":
        vocab = {}
        for token, i in doc["vocab"].items():
            data = token_to_bytes(token)
            if data is None:
                raise ValueError(f"vocab token {token!r} is not a byte-level string")
            vocab[data] = i
        merges = []
        for k, line in enumerate(doc["merges"]):
            parts = line.split(" ")
            if len(parts) != 2 or token_to_bytes(parts[0]) is None or token_to_bytes(parts[1]) is None:
                raise ValueError(f"merge {k} {line!r} is not two byte-level tokens separated by a space")
            merges.append((token_to_bytes(parts[0]), token_to_bytes(parts[1])))
        return ByteLevelBPETokenizer(vocab, merges, doc["special_tokens"], doc["pattern"], doc["roles"])  # type: ignore[arg-type]
    if kind == "wordpiece":
        from tformer.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.from_config(doc)
    if kind == "char":
        from tformer.tokenizers.char import CharTokenizer

        return CharTokenizer.from_config(doc)
    raise ValueError(f"unknown tokenizer type {kind!r} (expected byte_bpe, wordpiece or char)")


# ---- discovery --------------------------------------------------------------------------------------
_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a directory or file.

    Recognises, in this order: tformer's ``tformer_tokenizer.json``; GPT-2 BPE files (``vocab.json`` +
    ``merges.txt``, or OpenAI's ``encoder.json`` + ``vocab.bpe``); a WordPiece ``vocab.txt`` (settings
    from a ``tokenizer_config.json`` beside it, when present). A file path may name any of these files.

    Raises:
        ConfigError: nothing recognisable at ``path``, or a malformed file.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no tokenizer at {path}: the path does not exist")
    if path.is_dir():
        directory, name = path, None
    else:
        directory, name = path.parent, path.name
    if name in (None, TFORMER_FILE) and (directory / TFORMER_FILE).is_file():
        return read_tformer_file(directory / TFORMER_FILE)
    for vocab_name, merges_name in _PAIRS:
        if name in (None, vocab_name, merges_name) and (directory / vocab_name).is_file():
            if not (directory / merges_name).is_file():
                raise ConfigError(f"{directory / vocab_name} needs {merges_name} beside it; it is missing")
            return bpe_from_gpt2_files(directory / vocab_name, directory / merges_name)
    if name is None and (directory / "vocab.txt").is_file():
        name = "vocab.txt"
    if name is not None and name.endswith(".txt"):
        from tformer.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.from_vocab_file(directory / name)
    if name is not None and name.endswith(".json"):
        return read_tformer_file(path)
    raise ConfigError(
        f"no tokenizer files in {path}: expected {TFORMER_FILE}, vocab.json + merges.txt, "
        "encoder.json + vocab.bpe, or vocab.txt"
    )
