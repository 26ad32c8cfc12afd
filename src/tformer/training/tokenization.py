"""The tokenizer of a training run: trained on the data (characters or byte-level BPE) or loaded.

Each task names the special tokens it needs: masked-LM needs [MASK]; classification and masked-LM use
[CLS] / [SEP] / [PAD]; sequence-to-sequence needs <pad>, the start token <s> and </s>.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError

#: (special tokens, unknown-token name) of a trained tokenizer, per task.
_SPECIALS: dict[str, tuple[tuple[str, ...], str]] = {
    "clm": ((), "<unk>"),
    "mlm": (("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[UNK]"),
    "classify": (("[PAD]", "[UNK]", "[CLS]", "[SEP]"), "[UNK]"),
    "seq2seq": (("<pad>", "<s>", "</s>", "<unk>"), "<unk>"),
}

#: Roles each task requires of its tokenizer.
_REQUIRED = {
    "mlm": ("mask",),
    "classify": ("pad",),
    "seq2seq": ("pad", "eos"),
    "copy": ("pad", "bos", "eos"),
    "reverse": ("pad", "bos", "eos"),
}


def train_tokenizer(
    kind: str, task: str, texts: Sequence[str], vocab_size: int, cache_dir: Path | None = None
):
    """A ``char`` or ``bpe`` tokenizer learned from ``texts`` with the task's special tokens.

    BPE training is slow in pure Python, so its result is cached under ``cache_dir`` by a hash of the texts.
    """
    from tformer.tokenizers import ByteLevelBPETokenizer, CharTokenizer, load_tokenizer

    specials, unk = _SPECIALS[task]
    if kind == "char":
        return CharTokenizer.train(texts, special_tokens=specials, unknown="replace", unk_token=unk)
    bpe_specials = specials or ("<|endoftext|>",)
    h = hashlib.sha256(json.dumps([vocab_size, bpe_specials]).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
    cached = cache_dir / f"tokenizer-bpe-{h.hexdigest()[:16]}" if cache_dir is not None else None
    if cached is not None and cached.is_dir():
        return load_tokenizer(cached)
    tok = ByteLevelBPETokenizer.train(texts, vocab_size=vocab_size, special_tokens=bpe_specials)
    if cached is not None:
        tok.save(cached)
    return tok


def check_tokenizer(tok: Any, task: str) -> None:
    """Raise ConfigError if ``tok`` lacks a special token ``task`` needs."""
    for role in _REQUIRED.get(task, ()):
        if getattr(tok, f"{role}_token_id", None) is None:
            raise ConfigError(f"the {task} task needs a tokenizer with a {role} token; this one has none")
    if task in ("seq2seq",) and tok.bos_token_id is None and tok.pad_token_id is None:
        raise ConfigError("the seq2seq task needs a start token (<s>/bos or the pad token)")


def make_tokenizer(spec: str, task: str, texts: Sequence[str], vocab_size: int, cache_dir: Path | None):
    """``spec`` is ``char``, ``bpe`` or a tokenizer directory/file."""
    from tformer.tokenizers import load_tokenizer

    if spec in ("char", "bpe"):
        tok = train_tokenizer(spec, task, texts, vocab_size, cache_dir)
    elif Path(spec).exists():
        tok = load_tokenizer(spec)
    else:
        raise ConfigError(f"tokenizer={spec!r} is neither 'char', 'bpe' nor an existing tokenizer path")
    check_tokenizer(tok, task)
    return tok
