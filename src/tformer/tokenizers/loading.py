"""What tokenizer a directory or file holds, and loading it: tformer's file, Hugging Face's tokenizer.json,
GPT-2's pair, BERT's vocab.txt.

The files themselves are read in :mod:`tformer.tokenizers.formats` and :mod:`tformer.tokenizers.hf_format`
(which turns a tokenizer.json into tformer's document); each tokenizer class builds itself from its part of
tformer's document (``from_config``), registered here by its ``file_type``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError
from tformer.tokenizers.base import Tokenizer, infer_roles
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.tokenizers.char import CharTokenizer
from tformer.tokenizers.formats import TFORMER_FILE, read_gpt2_files, read_json, read_tformer_file
from tformer.tokenizers.hf_format import HF_CONFIG_FILE, HF_FILE, document_from_hf
from tformer.tokenizers.wordpiece import WordPieceTokenizer

# the "type" field of tformer's tokenizer file -> the class that reads it
TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {
    cls.file_type: cls for cls in (ByteLevelBPETokenizer, WordPieceTokenizer, CharTokenizer)
}

# GPT-2 BPE files: Hugging Face's names, then OpenAI's
_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


def bpe_from_gpt2_files(vocab_path: str | Path, merges_path: str | Path) -> ByteLevelBPETokenizer:
    """Build a tokenizer from GPT-2-format files; vocab entries that no merge produces and that are not
    single bytes (GPT-2's ``<|endoftext|>``) become special tokens."""
    ordinary, merges, special = read_gpt2_files(vocab_path, merges_path)
    try:
        return ByteLevelBPETokenizer(ordinary, merges, special)
    except ConfigError as e:
        raise ConfigError(f"{vocab_path}: {e}") from None


def tokenizer_from_document(doc: dict[str, Any], source: str | Path) -> Tokenizer:
    """The tokenizer a tformer document describes (read from either file format)."""
    try:
        kind = doc["type"]
        if kind not in TOKENIZER_TYPES:
            raise ValueError(f"unknown tokenizer type {kind!r} (expected {', '.join(TOKENIZER_TYPES)})")
        tok = TOKENIZER_TYPES[kind].from_config(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        msg = f"missing field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise ConfigError(f"{source}: malformed tokenizer file: {msg}") from None
    tok.padding_side = doc.get("padding_side", "right")
    tok.truncation_side = doc.get("truncation_side", "right")
    return tok


def tokenizer_from_tformer_file(path: str | Path) -> Tokenizer:
    """Read tformer's ``tformer_tokenizer.json`` into the tokenizer it describes."""
    path = Path(path)
    return tokenizer_from_document(read_tformer_file(path), path)


def _advisory_json(path: Path) -> dict[str, Any]:
    """A JSON object beside a tokenizer file (tokenizer_config.json, config.json), or {} if absent or bad."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def tokenizer_from_hf_file(path: str | Path) -> Tokenizer:
    """Read Hugging Face's ``tokenizer.json`` (with ``tokenizer_config.json`` beside it for the roles).

    Raises:
        ConfigError: a kind of tokenizer tformer does not implement, naming it and the model type from a
            config.json beside it; or a malformed file.
    """
    path = Path(path)
    tj = read_json(path)
    if not isinstance(tj, dict) or "model" not in tj:
        raise ConfigError(f"{path}: not a Hugging Face tokenizer.json (no model)")
    config = _advisory_json(path.parent / HF_CONFIG_FILE)
    model_type = _advisory_json(path.parent / "config.json").get("model_type")
    doc = document_from_hf(tj, config, str(path), model_type)
    if doc["roles"] is None:
        doc["roles"] = infer_roles(doc["special_tokens"])
    framing = doc.pop("framing", None)
    if framing is not None:  # the post-processor frames with these, whatever their names
        doc["roles"] = {**doc["roles"], "cls": framing[0], "sep": framing[1]}
    return tokenizer_from_document(doc, path)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a directory or file.

    Recognises, in this order: tformer's ``tformer_tokenizer.json``; Hugging Face's ``tokenizer.json`` of a
    kind tformer implements (byte-level BPE, WordPiece, characters); GPT-2 BPE files (``vocab.json`` +
    ``merges.txt``, or OpenAI's ``encoder.json`` + ``vocab.bpe``); a WordPiece ``vocab.txt`` (settings from a
    ``tokenizer_config.json`` beside it, when present); then a ``tokenizer.json`` of another kind is an error
    naming it. A file path may name any of these files.

    Raises:
        ConfigError: nothing recognisable at ``path``, or a malformed or unsupported file.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no tokenizer at {path}: the path does not exist")
    if path.is_dir():
        directory, name = path, None
    else:
        directory, name = path.parent, path.name
    if name in (None, TFORMER_FILE) and (directory / TFORMER_FILE).is_file():
        return tokenizer_from_tformer_file(directory / TFORMER_FILE)
    if name == HF_FILE:
        return tokenizer_from_hf_file(path)
    hf_error: ConfigError | None = None
    if name is None and (directory / HF_FILE).is_file():
        try:
            return tokenizer_from_hf_file(directory / HF_FILE)
        except ConfigError as e:  # the classic files below may still describe it
            hf_error = e
    for vocab_name, merges_name in _PAIRS:
        if name in (None, vocab_name, merges_name) and (directory / vocab_name).is_file():
            if not (directory / merges_name).is_file():
                raise ConfigError(f"{directory / vocab_name} needs {merges_name} beside it; it is missing")
            return bpe_from_gpt2_files(directory / vocab_name, directory / merges_name)
    if name is None and (directory / "vocab.txt").is_file():
        name = "vocab.txt"
    if name is not None and name.endswith(".txt"):
        return WordPieceTokenizer.from_vocab_file(directory / name)
    if hf_error is not None:
        raise hf_error
    if name is not None and name.endswith(".json"):
        return tokenizer_from_tformer_file(path)
    raise ConfigError(
        f"no tokenizer files in {path}: expected {TFORMER_FILE}, {HF_FILE}, vocab.json + merges.txt, "
        "encoder.json + vocab.bpe, or vocab.txt"
    )
