"""Tokenizer file formats, read and written as plain data: GPT-2's vocab.json + merges.txt, BERT's vocab.txt,
tformer's versioned JSON.

tformer's own format is one JSON file, ``tformer_tokenizer.json``::

    {"format": "tformer-tokenizer", "version": 1, "type": "byte_bpe" | "wordpiece" | "char",
     "special_tokens": {token: id}, "roles": {"eos": token, ...}, ...type-specific fields}

Byte-level tokens are stored as GPT-2's printable strings (``"Ġthe"`` for ``b" the"``). Every reader turns a
malformed file into a one-line ConfigError naming the file and the line. Which format a directory holds is
decided in ``tformer.tokenizers.loading``; the tokenizer classes build themselves from what is read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tformer.errors import ConfigError
from tformer.tokenizers.pretokenize import bytes_to_token, token_to_bytes

if TYPE_CHECKING:  # the tokenizer classes call into this module, never the reverse
    from tformer.tokenizers.base import Tokenizer

TFORMER_FILE = "tformer_tokenizer.json"
FORMAT_NAME = "tformer-tokenizer"
FORMAT_VERSION = 1

ByteMerges = list[tuple[bytes, bytes]]


# ---- any text file ----------------------------------------------------------------------------------
def read_text(path: Path, hint: str = "") -> str:
    """The UTF-8 text of ``path``; a ConfigError naming the file when it is unreadable or not UTF-8.

    ``hint`` is appended to the not-UTF-8 message (``"; a vocab.txt must be UTF-8"``).
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start}){hint}") from None


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; a ConfigError naming the file when it is unreadable or invalid."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


# ---- byte-level token strings -------------------------------------------------------------------------
def byte_vocab_to_json(vocab: dict[bytes, int]) -> dict[str, int]:
    """Token bytes -> id as printable token strings, in id order."""
    return {bytes_to_token(t): i for t, i in sorted(vocab.items(), key=lambda kv: kv[1])}


def byte_vocab_from_json(entries: dict[str, int]) -> dict[bytes, int]:
    """Inverse of :func:`byte_vocab_to_json`; ValueError for a string that is not byte-level."""
    vocab = {}
    for token, i in entries.items():
        data = token_to_bytes(token)
        if data is None:
            raise ValueError(f"vocab token {token!r} is not a byte-level string")
        vocab[data] = i
    return vocab


def merges_to_lines(merges: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Merges as ``"left right"`` lines of token strings: ``[(b"t", b"h")] -> ["t h"]``."""
    return [f"{bytes_to_token(a)} {bytes_to_token(b)}" for a, b in merges]


def merges_from_lines(lines: Iterable[str]) -> ByteMerges:
    """Inverse of :func:`merges_to_lines`; ValueError naming the first malformed merge."""
    merges = []
    for k, line in enumerate(lines):
        parts = line.split(" ")
        pair = [token_to_bytes(p) for p in parts] if len(parts) == 2 else []
        if len(pair) != 2 or pair[0] is None or pair[1] is None:
            raise ValueError(f"merge {k} {line!r} is not two byte-level tokens separated by a space")
        merges.append((pair[0], pair[1]))
    return merges


# ---- GPT-2 files ------------------------------------------------------------------------------------
def read_vocab_json(path: str | Path) -> dict[str, int]:
    """Read GPT-2's ``vocab.json`` / ``encoder.json``: a JSON object of token string -> id."""
    path = Path(path)
    vocab = read_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise ConfigError(f"{path}: expected a non-empty JSON object mapping token strings to ids")
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ConfigError(f"{path}: token {token!r} has id {i!r}; ids must be non-negative integers")
    return vocab


def read_merges_txt(path: str | Path) -> list[tuple[str, str]]:
    """Read GPT-2's ``merges.txt`` / ``vocab.bpe``: an optional ``#version`` line, then ``left right``."""
    path = Path(path)
    merges = []
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
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


def read_gpt2_files(
    vocab_path: str | Path, merges_path: str | Path
) -> tuple[dict[bytes, int], ByteMerges, dict[str, int]]:
    """(ordinary vocab, merges, special tokens) of GPT-2-format files.

    Vocab entries that no merge produces and that are not single bytes (GPT-2's ``<|endoftext|>``) are the
    special tokens.
    """
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
    return ordinary, byte_merges, special  # type: ignore[return-value]


def write_gpt2_files(
    vocab: dict[bytes, int], merges: ByteMerges, special_tokens: dict[str, int], directory: Path
) -> None:
    """Write ``vocab.json`` (special tokens included) and ``merges.txt`` in GPT-2/HF layout."""
    entries = {bytes_to_token(t): i for t, i in vocab.items()}
    entries.update(special_tokens)
    ordered = dict(sorted(entries.items(), key=lambda kv: kv[1]))
    (directory / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *merges_to_lines(merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- BERT files -------------------------------------------------------------------------------------
def read_vocab_txt(path: Path) -> dict[str, int]:
    """Read BERT's ``vocab.txt``: one token per line, id = line number (a repeated token keeps its last)."""
    lines = read_text(path, "; a vocab.txt must be UTF-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ConfigError(f"{path}: empty vocabulary file")
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}  # the last repeat wins, as HF's does


# tokenizer_config.json key -> WordPieceTokenizer argument
_WORDPIECE_SETTINGS = (
    ("do_lower_case", "lowercase"),
    ("strip_accents", "strip_accents"),
    ("tokenize_chinese_chars", "tokenize_chinese_chars"),
)


def read_wordpiece_settings(directory: Path) -> dict[str, Any]:
    """WordPieceTokenizer keyword arguments from a ``tokenizer_config.json`` in ``directory``, if any.

    The file is optional and advisory: a missing or unreadable one gives no settings.
    """
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: config[key] for key, name in _WORDPIECE_SETTINGS if key in config}


def write_vocab_txt(tokens: list[str], directory: Path) -> None:
    """Write BERT's ``vocab.txt``: the tokens in id order, one a line."""
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


# ---- tformer format ---------------------------------------------------------------------------------
def tformer_document(tok: Tokenizer) -> dict[str, Any]:
    """The document of ``tformer_tokenizer.json``: the header (``tok.file_type``, special tokens, roles,
    sides) and the fields of the tokenizer's type (``tok.config_fields()``)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "type": tok.file_type,
        "special_tokens": tok.special_tokens,
        "roles": tok.roles,
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        **tok.config_fields(),
    }


def write_tformer_file(tok: Tokenizer, directory: str | Path) -> Path:
    """Write ``tformer_tokenizer.json`` (:func:`tformer_document`); return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = tformer_document(tok)
    (directory / TFORMER_FILE).write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return directory


def read_tformer_file(path: Path) -> dict[str, Any]:
    """The document of a ``tformer_tokenizer.json``, its header checked (the fields are the type's to read)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ConfigError(f'{path}: not a tformer tokenizer file (no "format": "{FORMAT_NAME}")')
    if doc.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: tokenizer format version {doc.get('version')!r} is not supported (expected 1)"
        )
    return doc
