"""What tokenizer a directory or file holds, and loading it: tformer's file, GPT-2's pair, BERT's vocab.txt.

The files themselves are read in :mod:`tformer.tokenizers.formats`; each tokenizer class builds itself from
its part of tformer's file (``from_config``), registered here by its ``file_type``.
"""

from __future__ import annotations

from pathlib import Path

from tformer.errors import ConfigError
from tformer.tokenizers.base import Tokenizer
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.tokenizers.char import CharTokenizer
from tformer.tokenizers.formats import TFORMER_FILE, read_gpt2_files, read_tformer_file
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


def tokenizer_from_tformer_file(path: str | Path) -> Tokenizer:
    """Read tformer's ``tformer_tokenizer.json`` into the tokenizer it describes."""
    path = Path(path)
    doc = read_tformer_file(path)
    try:
        kind = doc["type"]
        if kind not in TOKENIZER_TYPES:
            raise ValueError(f"unknown tokenizer type {kind!r} (expected {', '.join(TOKENIZER_TYPES)})")
        tok = TOKENIZER_TYPES[kind].from_config(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        msg = f"missing field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed tokenizer file: {msg}") from None
    tok.padding_side = doc.get("padding_side", "right")
    tok.truncation_side = doc.get("truncation_side", "right")
    return tok


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
        return tokenizer_from_tformer_file(directory / TFORMER_FILE)
    for vocab_name, merges_name in _PAIRS:
        if name in (None, vocab_name, merges_name) and (directory / vocab_name).is_file():
            if not (directory / merges_name).is_file():
                raise ConfigError(f"{directory / vocab_name} needs {merges_name} beside it; it is missing")
            return bpe_from_gpt2_files(directory / vocab_name, directory / merges_name)
    if name is None and (directory / "vocab.txt").is_file():
        name = "vocab.txt"
    if name is not None and name.endswith(".txt"):
        return WordPieceTokenizer.from_vocab_file(directory / name)
    if name is not None and name.endswith(".json"):
        return tokenizer_from_tformer_file(path)
    raise ConfigError(
        f"no tokenizer files in {path}: expected {TFORMER_FILE}, vocab.json + merges.txt, "
        "encoder.json + vocab.bpe, or vocab.txt"
    )
