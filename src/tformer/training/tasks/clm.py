"""Causal language modelling from text files: a memory-mapped token file and random windows.

The text is tokenised once into ``uint16`` (or ``uint32`` for vocabularies over 65536) files, one for
the training split and one for the validation split (the last ``val_fraction`` of the tokens), cached
under ``cache_dir`` and keyed by the sources' paths, sizes and modification times and by the tokenizer,
so a later run on unchanged files re-uses them. A training example is a random window of
``block_size + 1`` tokens: the model reads the first ``block_size`` and predicts the last ``block_size``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tformer.errors import DataError
from tformer.io import atomic_write
from tformer.training.losses import nll_sum, token_cross_entropy
from tformer.training.tasks.base import Batch, Task, TaskSetup, generator
from tformer.training.tasks.files import read_text


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's saved files: equal fingerprints encode text identically."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        h = hashlib.sha256()
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _source_key(paths: Sequence[Path], fingerprint: str, val_fraction: float) -> str:
    parts = [
        {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in paths
    ]
    blob = json.dumps(
        {"sources": parts, "tokenizer": fingerprint, "val_fraction": val_fraction}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type holding every id."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_files(paths: Sequence[Path], tokenizer: Any) -> np.ndarray:
    """All files' ids, concatenated (with the EOS id between files when the tokenizer has one)."""
    dtype = token_dtype(tokenizer.vocab_size)
    eos = getattr(tokenizer, "eos_token_id", None)
    chunks = []
    for i, path in enumerate(paths):
        if i and eos is not None:
            chunks.append(np.array([eos], dtype=dtype))
        chunks.append(np.asarray(tokenizer.encode_ordinary(read_text(path)), dtype=dtype))
    return np.concatenate(chunks)


def _write_array(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: array.tofile(tmp))


def build_token_cache(paths: Sequence[Path], tokenizer: Any, cache_dir: Path, val_fraction: float) -> Path:
    """Tokenise ``paths`` into ``cache_dir`` unless an up-to-date cache exists; returns its metadata file."""
    fingerprint = tokenizer_fingerprint(tokenizer)
    key = _source_key(paths, fingerprint, val_fraction)
    meta_path = cache_dir / f"tokens-{key}.json"
    if meta_path.is_file():
        return meta_path
    ids = encode_files(paths, tokenizer)
    n_val = int(len(ids) * val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    _write_array(cache_dir / f"tokens-{key}.train.bin", train)
    _write_array(cache_dir / f"tokens-{key}.val.bin", val)
    meta = {
        "dtype": str(ids.dtype),
        "train_tokens": len(train),
        "val_tokens": len(val),
        "sources": [str(p) for p in paths],
        "tokenizer": fingerprint,
    }
    # the metadata is written last: its presence means both token files are complete
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return meta_path


def open_token_cache(meta_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train tokens, val tokens) as read-only memory maps."""
    meta = json.loads(meta_path.read_text())
    stem = meta_path.name[: -len(".json")]

    def load(split: str) -> np.ndarray:
        n = meta[f"{split}_tokens"]
        if n == 0:
            return np.zeros(0, dtype=meta["dtype"])
        return np.memmap(meta_path.parent / f"{stem}.{split}.bin", dtype=meta["dtype"], mode="r", shape=(n,))

    return load("train"), load("val")


def windows(tokens: np.ndarray, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ``tokens[s : s + length]`` for each start: (len(starts), length) int64."""
    idx = starts.numpy()[:, None] + np.arange(length)[None, :]
    return torch.from_numpy(tokens[idx].astype(np.int64))


def check_length(tokens: np.ndarray, block_size: int, split: str) -> None:
    """A split must hold at least one window of ``block_size + 1`` tokens; a one-line DataError otherwise."""
    if len(tokens) < block_size + 1:
        raise DataError(
            f"the {split} split has {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}; "
            "use more data or a smaller block_size"
        )


class CLMTask(Task):
    """Next-token prediction on random windows of a token array.

    Args:
        train_tokens, val_tokens: 1-D id arrays (memory maps). block_size: tokens the model reads.
        batch_size, grad_accum, seed: see ``Task``. eval_batches: batches per evaluation.
        sequential_eval: evaluate on consecutive non-overlapping windows covering the validation tokens
            (at most ``eval_batches`` batches; None: all) instead of random windows.
    """

    name = "clm"
    arch, default_preset = "decoder", "gpt-tiny"

    def __init__(
        self,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int | None,
        sequential_eval: bool = False,
    ) -> None:
        super().__init__(batch_size, grad_accum, seed)
        self.train_tokens, self.val_tokens, self.block_size = train_tokens, val_tokens, block_size
        self.n_eval, self.sequential_eval = eval_batches, sequential_eval
        if len(train_tokens):
            check_length(train_tokens, block_size, "training")
        if len(val_tokens):
            check_length(val_tokens, block_size, "validation")

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> CLMTask:
        """The task over ``setup``'s token arrays; evaluation only reads consecutive windows of them all."""
        train, val = setup_tokens(setup)
        return cls(
            train,
            val,
            setup.config.block_size,
            **setup.batching(),
            eval_batches=setup.n_eval_batches(),
            sequential_eval=setup.evaluate_only,  # evaluation only: consecutive windows over everything
        )

    def _batch(self, rows: torch.Tensor) -> Batch:
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}

    def train_batch(self, step: int, micro: int) -> Batch:
        """Random windows of the training tokens, drawn from a generator seeded by (seed, step, micro)."""
        gen = generator(self.seed, step, micro)
        high = len(self.train_tokens) - self.block_size
        starts = torch.randint(0, high, (self.batch_size,), generator=gen)
        return self._batch(windows(self.train_tokens, starts, self.block_size + 1))

    def make_eval_batches(self) -> list[Batch]:
        """Consecutive windows of the validation tokens, or ``eval_batches`` batches of seeded random ones."""
        if len(self.val_tokens) == 0:
            return []
        high = len(self.val_tokens) - self.block_size
        if self.sequential_eval:
            starts = torch.arange(0, high, self.block_size)
            batches = [starts[i : i + self.batch_size] for i in range(0, len(starts), self.batch_size)]
            batches = batches[: self.n_eval] if self.n_eval else batches
        else:
            gen = generator(self.seed, -1)
            batches = [
                torch.randint(0, high, (self.batch_size,), generator=gen) for _ in range(self.n_eval or 1)
            ]
        return [self._batch(windows(self.val_tokens, s, self.block_size + 1)) for s in batches]

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean next-token cross-entropy over the (B, T, V) logits."""
        logits = model(batch["input_ids"]).logits  # (B, T, V)
        return token_cross_entropy(logits, batch["labels"], label_smoothing)

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """Summed next-token loss and token count."""
        loss, count = nll_sum(model(batch["input_ids"]).logits, batch["labels"])
        return {"loss_sum": loss, "count": float(count)}


def load_text_tokens(
    paths: Sequence[Path], tokenizer: Any, cache_dir: Path | None, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) token arrays of text files, through the cache when ``cache_dir`` is given."""
    if cache_dir is None:
        ids = encode_files(paths, tokenizer)
        n_val = int(len(ids) * val_fraction)
        return ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    return open_token_cache(build_token_cache(paths, tokenizer, cache_dir, val_fraction))


def setup_tokens(setup: TaskSetup) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) tokens of a text task's files; for evaluation only, every token is validation data."""
    val_fraction = 1.0 if setup.evaluate_only else setup.config.val_fraction
    return load_text_tokens(setup.paths, setup.tokenizer, setup.cache_dir, val_fraction)
