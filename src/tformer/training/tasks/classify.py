"""Sequence classification from (text, label) records: ``[CLS] text [SEP]`` -> one label per example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from tformer.errors import DataError
from tformer.training.tasks.base import Batch, IndexStream, Task, pad_rows

Example = tuple[list[int], int]


def label_names(labels: Sequence[str]) -> list[str]:
    """The label vocabulary: integers 0..K-1 keep their order; other labels are sorted."""
    unique = sorted(set(labels))
    if all(s.strip().lstrip("-").isdigit() for s in unique):
        values = sorted({int(s) for s in unique})
        if values[0] < 0:
            raise DataError(f"integer labels must be >= 0, found {values[0]}")
        return [str(i) for i in range(values[-1] + 1)]
    return unique


def encode_examples(
    records: Sequence[tuple[str, str]], tokenizer: Any, names: Sequence[str], block_size: int
) -> list[Example]:
    """Ids framed with [CLS]/[SEP] (when the tokenizer has them), cut to ``block_size``, and label ids."""
    index = {n: i for i, n in enumerate(names)}
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    room = block_size - (cls is not None) - (sep is not None)
    out = []
    for text, label in records:
        key = str(int(label)) if label.strip().lstrip("-").isdigit() else label
        if key not in index:
            raise DataError(f"label {label!r} is not one of the model's labels {list(names)}")
        ids = tokenizer.encode_ordinary(text)[:room]
        ids = ([cls] if cls is not None else []) + ids + ([sep] if sep is not None else [])
        out.append((ids, index[key]))
    return out


class ClassifyTask(Task):
    """Cross-entropy on the classification head's (B, num_labels) logits; accuracy at evaluation."""

    name = "classify"
    best_metric, larger_is_better = "accuracy", True
    eval_keys = ("loss_sum", "count", "correct")

    def __init__(
        self,
        train: list[Example],
        val: list[Example],
        pad_id: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int,
    ) -> None:
        super().__init__(batch_size, grad_accum, seed)
        if not train:
            raise DataError("no training examples")
        self.train, self.val, self.pad_id, self.n_eval = train, val, pad_id, eval_batches
        self.stream = IndexStream(len(train), seed)

    def collate(self, examples: Sequence[Example]) -> Batch:
        ids, mask = pad_rows([e[0] for e in examples], self.pad_id)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e[1] for e in examples])}

    def train_batch(self, step: int, micro: int) -> Batch:
        idx = self.stream.take(self.micro_index(step, micro) * self.batch_size, self.batch_size)
        return self.collate([self.train[i] for i in idx])

    def make_eval_batches(self) -> list[Batch]:
        rows = self.val[: self.n_eval * self.batch_size]
        return [self.collate(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"]).logits  # (B, num_labels)
        return F.cross_entropy(logits.float(), batch["labels"], label_smoothing=label_smoothing)

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        logits = model(batch["input_ids"], batch["attention_mask"]).logits.float()
        loss = F.cross_entropy(logits, batch["labels"], reduction="sum")
        correct = (logits.argmax(-1) == batch["labels"]).sum()
        return {"loss_sum": float(loss), "count": float(len(batch["labels"])), "correct": float(correct)}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n}

    def n_tokens(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())
