"""What every training task provides, and the deterministic sampling they share.

Batches are a pure function of ``(seed, step, micro_step)``: a resumed run draws exactly the batches the
uninterrupted run would have, with no sampler state to save. A task always builds the *global* batch (all
data-parallel processes together); each process then keeps its own rows (``shard``), so one process and
N processes see the same examples.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import DataError
from tformer.training.config import TrainConfig
from tformer.training.tasks.files import check_files, read_records, read_text

Batch = dict[str, torch.Tensor]
Record = tuple[str, str]

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 steps), so nearby steps get unrelated streams.

    Example: ``mix_seed(1337, 5, 0) != mix_seed(1337, 0, 5)``.
    """
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def generator(*values: int) -> torch.Generator:
    """A CPU generator seeded from ``mix_seed(*values)``."""
    return torch.Generator().manual_seed(mix_seed(*values))


def shard(batch: Batch, rank: int, world_size: int) -> Batch:
    """This process's rows of a global batch: rows ``[rank * n / world, (rank + 1) * n / world)``."""
    if world_size == 1:
        return batch
    out = {}
    for key, t in batch.items():
        n = t.shape[0]
        if n % world_size:
            raise ValueError(f"a batch of {n} rows does not split over {world_size} processes")
        per = n // world_size
        out[key] = t[rank * per : (rank + 1) * per]
    return out


def pad_rows(rows: Sequence[Sequence[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists of ids to one length: (ids (B, T), mask (B, T) with 1 on real tokens).

    Example: ``pad_rows([[5, 6], [7]], 0) -> ([[5, 6], [7, 0]], [[1, 1], [1, 0]])``.
    """
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def split_examples(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, val indices): a seeded random ``val_fraction`` (at least one) held out."""
    if n < 2 and val_fraction > 0:
        raise DataError(f"need at least 2 examples to hold some out for validation, got {n}")
    perm = torch.randperm(n, generator=generator(seed, -2)).tolist()
    n_val = max(1, math.floor(n * val_fraction)) if val_fraction > 0 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])


@dataclass(frozen=True)
class TaskSetup:
    """What a task is built from: ``TASKS[setup.config.task].from_setup(setup)``.

    Attributes:
        config: the training config (batch and block sizes, seed, split, task knobs); ``block_size`` set.
        tokenizer: the run's tokenizer. model_config: the model's config (special ids, labels).
        paths: the data files (none for synthetic tasks). cache_dir: where text tasks cache token files.
        evaluate_only: ``tformer eval``: all the data is evaluation data, and ``max_eval_batches`` (None:
            all of it, or the task's default count where it draws random windows) replaces
            ``config.eval_batches``.
    """

    config: TrainConfig
    tokenizer: Any
    model_config: ModelConfig
    paths: Sequence[Path] = ()
    cache_dir: Path | None = None
    evaluate_only: bool = False
    max_eval_batches: int | None = None

    def batching(self) -> dict[str, int]:
        """The keyword arguments every task takes from the config: batch_size, grad_accum, seed."""
        cfg = self.config
        return {"batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "seed": cfg.seed}

    def n_eval_batches(self, default: int | None = None) -> int | None:
        """Evaluation batches: the config's count when training; else ``max_eval_batches`` or ``default``."""
        if not self.evaluate_only:
            return self.config.eval_batches
        return self.max_eval_batches or default


class IndexStream:
    """An endless stream of example indices: each epoch a fresh permutation of ``range(n)``, seeded by epoch.

    ``take(start, count)`` returns items ``start .. start + count - 1`` of the stream, so the position in the
    data is just a counter.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("IndexStream needs at least one example")
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator(self.seed, epoch))
        return self._perm

    def take(self, start: int, count: int) -> list[int]:
        """Items ``start .. start + count - 1`` of the stream (epochs continue across the boundary)."""
        out = []
        for j in range(start, start + count):
            out.append(int(self._permutation(j // self.n)[j % self.n]))
        return out


class Task(ABC):
    """A training objective: global batches, the loss, and evaluation metrics.

    Attributes:
        name: the task name (``clm``, ``mlm``, ...).
        batch_size: examples per global micro-batch.
        grad_accum: micro-batches per optimizer step (to number the examples).
        seed: the run's seed.
    """

    name = "task"
    #: The model family the task trains (``ModelConfig.arch``) and the preset a run uses by default.
    arch: str
    default_preset: str
    #: The task makes its own examples and tokenizer (no data files).
    synthetic = False
    #: The task reads tokens (False: its inputs are not text, and a run has no tokenizer).
    uses_tokenizer = True
    #: Special tokens of a tokenizer trained for the task, its unknown token, and the roles it must have
    #: (``"pad"``: ``tokenizer.pad_token_id`` is set).
    tokenizer_specials: tuple[str, ...] = ()
    unk_token = "<unk>"
    tokenizer_roles: tuple[str, ...] = ()
    #: The headline evaluation metric and whether larger is better (for "best" checkpoints).
    best_metric, larger_is_better = "loss", False
    #: The statistics ``eval_sums`` returns.
    eval_keys: tuple[str, ...] = ("loss_sum", "count")

    def __init__(self, batch_size: int, grad_accum: int, seed: int) -> None:
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        self._eval: list[Batch] | None = None

    @classmethod
    @abstractmethod
    def from_setup(cls, setup: TaskSetup) -> Task:
        """The task over ``setup``'s data (see ``TaskSetup``)."""

    @classmethod
    def check_data(cls, data: Sequence[str]) -> list[Path]:
        """The ``--data`` sources as paths, each checked (text tasks: readable files)."""
        return check_files(data)

    @classmethod
    def read_inputs(cls, paths: Sequence[Path]) -> tuple[list[str], list[Record]]:
        """(texts to train a tokenizer on, records): text tasks read whole files and have no records."""
        return [read_text(p) for p in paths], []

    @classmethod
    def model_changes(
        cls, config: ModelConfig, records: Sequence[Record], pretrained: bool = False
    ) -> dict[str, Any]:
        """ModelConfig fields the task sets on a new run's model (its head), from the data's records.

        ``pretrained``: ``config`` is a pretrained model's, whose weights fix its shapes (a new run's preset
        may still be fitted to the data)."""
        return {}

    def micro_index(self, step: int, micro: int) -> int:
        """The global number of micro-batch ``micro`` of optimizer step ``step`` (1-based)."""
        return (step - 1) * self.grad_accum + micro

    @abstractmethod
    def train_batch(self, step: int, micro: int) -> Batch:
        """The global training batch of micro-step ``micro`` of optimizer step ``step``."""

    @abstractmethod
    def make_eval_batches(self) -> list[Batch]:
        """The fixed global evaluation batches (drawn once; the same at every evaluation)."""

    def eval_batches(self) -> list[Batch]:
        """The evaluation batches, made on the first call and reused: every evaluation sees the same data."""
        if self._eval is None:
            self._eval = self.make_eval_batches()
        return self._eval

    @abstractmethod
    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """The mean training loss of ``batch`` (a scalar that backpropagates)."""

    @abstractmethod
    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """Additive statistics of one batch (e.g. summed loss and token count), summed over batches and
        processes before ``summarize``."""

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from summed statistics: ``loss`` and ``perplexity`` by default."""
        loss = sums["loss_sum"] / max(sums["count"], 1.0)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    def n_tokens(self, batch: Batch) -> int:
        """Tokens the model reads in ``batch`` (for tokens/s)."""
        return sum(int(v.numel()) for k, v in batch.items() if k in ("input_ids", "decoder_input_ids"))


class ExampleTask(Task):
    """A task over a fixed list of examples (classification records, seq2seq pairs): training batches walk
    an endless shuffled stream of them; evaluation uses the first ``eval_batches`` batches of ``val`` (None:
    all of them). Subclasses read records of ``record_fields`` and turn examples into a batch with
    ``collate``."""

    #: The two fields of a record in the data files, e.g. ("source", "target").
    record_fields: tuple[str, str]
    #: How many of a record's fields are text to train a tokenizer on (the rest is a label).
    text_fields = 1

    def __init__(
        self,
        train: Sequence[Any],
        val: Sequence[Any],
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int | None,
    ) -> None:
        super().__init__(batch_size, grad_accum, seed)
        if not train:
            raise DataError("no training examples")
        self.train, self.val, self.n_eval = train, val, eval_batches
        self.stream = IndexStream(len(train), seed)

    @classmethod
    def read_inputs(cls, paths: Sequence[Path]) -> tuple[list[str], list[Record]]:
        """(texts to train a tokenizer on, records): each record's first ``text_fields`` fields are text."""
        records = [r for p in paths for r in read_records(p, cls.record_fields)]
        return [t for r in records for t in r[: cls.text_fields]], records

    @staticmethod
    def split(examples: Sequence[Any], setup: TaskSetup) -> tuple[Sequence[Any], Sequence[Any]]:
        """(train, val) examples: all of them as both for evaluation only, else a seeded held-out share."""
        cfg = setup.config
        if setup.evaluate_only:
            return examples, examples
        if cfg.val_fraction == 0.0:
            return examples, []
        train_idx, val_idx = split_examples(len(examples), cfg.val_fraction, cfg.seed)
        return [examples[i] for i in train_idx], [examples[i] for i in val_idx]

    @abstractmethod
    def collate(self, examples: Sequence[Any]) -> Batch:
        """A padded batch of examples."""

    def train_batch(self, step: int, micro: int) -> Batch:
        """The next ``batch_size`` examples of the shuffled stream, collated."""
        idx = self.stream.take(self.micro_index(step, micro) * self.batch_size, self.batch_size)
        return self.collate([self.train[i] for i in idx])

    def make_eval_batches(self) -> list[Batch]:
        """``val`` in order, ``batch_size`` examples a batch: the first ``eval_batches`` batches, or all."""
        rows = self.val if self.n_eval is None else self.val[: self.n_eval * self.batch_size]
        return [self.collate(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
