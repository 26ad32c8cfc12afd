"""Sequence classification from (text, label) records: ``[CLS] text [SEP]`` -> one label per example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from tformer.config import ModelConfig
from tformer.errors import DataError
from tformer.training.tasks.base import Batch, ExampleTask, Record, TaskSetup, pad_rows

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


class ClassifyTask(ExampleTask):
    """Cross-entropy on the classification head's (B, num_labels) logits; accuracy at evaluation."""

    name = "classify"
    arch, default_preset = "encoder", "bert-tiny"
    tokenizer_specials, unk_token = ("[PAD]", "[UNK]", "[CLS]", "[SEP]"), "[UNK]"
    tokenizer_roles = ("pad",)
    record_fields = ("text", "label")
    best_metric, larger_is_better = "accuracy", True
    eval_keys = ("loss_sum", "count", "correct")

    def __init__(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        pad_id: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int | None,
    ) -> None:
        super().__init__(train, val, batch_size, grad_accum, seed, eval_batches)
        self.pad_id = pad_id

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> ClassifyTask:
        """Encode the records under the model's label names, then split them into train and val."""
        cfg, model_cfg = setup.config, setup.model_config
        _, records = cls.read_inputs(setup.paths)
        names = model_cfg.extra.get("labels") or [str(i) for i in range(model_cfg.num_labels)]
        examples = encode_examples(records, setup.tokenizer, names, cfg.block_size)
        train, val = cls.split(examples, setup)
        return cls(
            train,
            val,
            setup.tokenizer.pad_token_id,
            **setup.batching(),
            eval_batches=setup.n_eval_batches(),
        )

    @classmethod
    def model_changes(
        cls, config: ModelConfig, records: Sequence[Record], pretrained: bool = False
    ) -> dict[str, Any]:
        """A classification head over the data's labels (their names kept in ``extra["labels"]``)."""
        labels = label_names([r[1] for r in records])
        return {
            "head": "classification",
            "num_labels": len(labels),
            "extra": {**config.extra, "labels": labels},
        }

    def collate(self, examples: Sequence[Example]) -> Batch:
        """Right-padded (B, T) ids and attention mask, and (B,) label ids."""
        ids, mask = pad_rows([e[0] for e in examples], self.pad_id)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e[1] for e in examples])}

    def logits(self, model: Any, batch: Batch) -> torch.Tensor:
        """The model's (B, num_labels) logits for a batch."""
        return model(batch["input_ids"], batch["attention_mask"]).logits

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy of the (B, num_labels) logits against the labels."""
        logits = self.logits(model, batch)  # (B, num_labels)
        return F.cross_entropy(logits.float(), batch["labels"], label_smoothing=label_smoothing)

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """Summed loss, example count and correct predictions of the batch."""
        logits = self.logits(model, batch).float()
        loss = F.cross_entropy(logits, batch["labels"], reduction="sum")
        correct = (logits.argmax(-1) == batch["labels"]).sum()
        return {"loss_sum": float(loss), "count": float(len(batch["labels"])), "correct": float(correct)}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Mean loss and accuracy (no perplexity: the loss is per example, not per token)."""
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n}

    def n_tokens(self, batch: Batch) -> int:
        """Real (unpadded) tokens of the batch."""
        return int(batch["attention_mask"].sum())
