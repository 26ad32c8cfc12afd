"""The tokenizer of a training run: trained on the data (characters or byte-level BPE) or loaded.

Each task class names the special tokens it needs (``Task.tokenizer_specials`` / ``tokenizer_roles``):
masked-LM needs [MASK]; classification and masked-LM use [CLS] / [SEP] / [PAD]; sequence-to-sequence
needs <pad>, the start token <s> and </s>.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.tokenizers import ByteLevelBPETokenizer, CharTokenizer, load_tokenizer
from tformer.training.tasks.registry import task_class


def train_tokenizer(
    kind: str, task: str, texts: Sequence[str], vocab_size: int, cache_dir: Path | None = None
):
    """A ``char`` or ``bpe`` tokenizer learned from ``texts`` with the task's special tokens.

    BPE training is slow in pure Python, so its result is cached under ``cache_dir`` by a hash of the texts.
    """
    specials, unk = task_class(task).tokenizer_specials, task_class(task).unk_token
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
    for role in task_class(task).tokenizer_roles:
        if getattr(tok, f"{role}_token_id", None) is None:
            raise ConfigError(f"the {task} task needs a tokenizer with a {role} token; this one has none")


def check_vocab(tok: Any, model_cfg: ModelConfig, where: Path) -> None:
    """Raise ConfigError unless the tokenizer in ``where`` and the model have the same vocabulary size."""
    if tok.vocab_size != model_cfg.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: the tokenizer in {where} has {tok.vocab_size} ids but the model "
            f"has vocab_size={model_cfg.vocab_size}"
        )


def make_tokenizer(spec: str, task: str, texts: Sequence[str], vocab_size: int, cache_dir: Path | None):
    """``spec`` is ``char``, ``bpe`` or a tokenizer directory/file."""
    if spec in ("char", "bpe"):
        tok = train_tokenizer(spec, task, texts, vocab_size, cache_dir)
    elif Path(spec).exists():
        tok = load_tokenizer(spec)
    else:
        raise ConfigError(f"tokenizer={spec!r} is neither 'char', 'bpe' nor an existing tokenizer path")
    check_tokenizer(tok, task)
    return tok
