"""Masked language modelling (BERT): random windows of the token file, framed and masked.

Of the eligible positions (never special tokens such as [CLS], [SEP] or padding), ``mlm_probability``
(15%) are selected; of those, 80% become [MASK], 10% a random ordinary token and 10% stay unchanged.
The loss is computed on the selected positions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.training.losses import IGNORE_INDEX, nll_sum, token_cross_entropy
from tformer.training.tasks.base import Batch, Record, Task, TaskSetup, generator
from tformer.training.tasks.clm import check_length, setup_tokens, windows


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_id: int,
    random_ids: torch.Tensor,
    gen: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a batch.

    Args:
        input_ids: (B, T) ids.
        special: (B, T) bool, True where a token must never be selected (special tokens, padding).
        mask_id: the [MASK] id. random_ids: (R,) ids to draw replacements from (ordinary tokens).
        gen: the random generator. probability: the share of eligible tokens selected.

    Returns:
        (masked inputs (B, T), labels (B, T): the original id at selected positions, -100 elsewhere).
        At least one position is selected whenever one is eligible, so the loss is always defined.
    """
    selected = (torch.rand(input_ids.shape, generator=gen) < probability) & ~special
    if not selected.any() and (~special).any():
        selected.view(-1)[int((~special).view(-1).nonzero()[0])] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    roll = torch.rand(input_ids.shape, generator=gen)
    replace = torch.randint(0, len(random_ids), input_ids.shape, generator=gen)
    inputs = input_ids.clone()
    inputs[selected & (roll < 0.8)] = mask_id
    to_random = selected & (roll >= 0.8) & (roll < 0.9)
    inputs[to_random] = random_ids[replace[to_random]]
    return inputs, labels


def ordinary_ids(vocab_size: int, special_ids: Iterable[int]) -> torch.Tensor:
    """Every id that is not a special token, as a 1-D tensor."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[list(special_ids)] = False
    return keep.nonzero().squeeze(1)


class MLMTask(Task):
    """Masked-LM on windows of ``block_size - 2`` tokens framed as ``[CLS] ... [SEP]``."""

    name = "mlm"
    arch, default_preset = "encoder", "bert-tiny"
    tokenizer_specials, unk_token = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[UNK]"
    tokenizer_roles = ("mask",)
    eval_keys = ("loss_sum", "count", "correct")
    #: random windows to evaluate on when evaluating a model on a file with no batch limit
    default_eval_batches = 50

    def __init__(
        self,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        block_size: int,
        tokenizer: Any,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int,
        probability: float = 0.15,
    ) -> None:
        super().__init__(batch_size, grad_accum, seed)
        if tokenizer.mask_token_id is None:
            raise ConfigError("the mlm task needs a tokenizer with a mask token ([MASK])")
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.mask_id, self.pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id
        self.special_ids = sorted(set(tokenizer.special_tokens.values()))
        self.random_ids = ordinary_ids(tokenizer.vocab_size, self.special_ids)
        self.frame = (self.cls_id is not None) + (self.sep_id is not None)
        self.window = block_size - self.frame
        self.train_tokens, self.val_tokens = train_tokens, val_tokens
        self.n_eval, self.probability = eval_batches, probability
        if len(train_tokens):
            check_length(train_tokens, self.window, "training")
        if len(val_tokens):
            check_length(val_tokens, self.window, "validation")

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> MLMTask:
        """The task over ``setup``'s token arrays, masking ``mlm_probability`` of the eligible tokens."""
        cfg = setup.config
        train, val = setup_tokens(setup)
        return cls(
            train,
            val,
            cfg.block_size,
            setup.tokenizer,
            **setup.batching(),
            eval_batches=setup.n_eval_batches(cls.default_eval_batches),
            probability=cfg.mlm_probability,
        )

    @classmethod
    def model_changes(
        cls, config: ModelConfig, records: Sequence[Record], pretrained: bool = False
    ) -> dict[str, Any]:
        """An MLM head on the encoder."""
        return {"head": "mlm"}

    def _batch(self, tokens: np.ndarray, gen: torch.Generator) -> Batch:
        starts = torch.randint(0, len(tokens) - self.window + 1, (self.batch_size,), generator=gen)
        ids = windows(tokens, starts, self.window)
        parts = []
        if self.cls_id is not None:
            parts.append(torch.full((self.batch_size, 1), self.cls_id))
        parts.append(ids)
        if self.sep_id is not None:
            parts.append(torch.full((self.batch_size, 1), self.sep_id))
        ids = torch.cat(parts, dim=1)
        special = torch.isin(ids, torch.tensor(self.special_ids, dtype=torch.long))
        inputs, labels = mask_tokens(ids, special, self.mask_id, self.random_ids, gen, self.probability)
        return {"input_ids": inputs, "labels": labels}

    def train_batch(self, step: int, micro: int) -> Batch:
        """Framed, masked random windows, from a generator seeded by (seed, step, micro)."""
        return self._batch(self.train_tokens, generator(self.seed, step, micro))

    def make_eval_batches(self) -> list[Batch]:
        """``eval_batches`` framed, masked random windows of the validation tokens (a fixed seed)."""
        if len(self.val_tokens) == 0:
            return []
        gen = generator(self.seed, -1)
        return [self._batch(self.val_tokens, gen) for _ in range(self.n_eval)]

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy over the selected (masked) positions."""
        logits = model(batch["input_ids"]).logits  # (B, T, V)
        return token_cross_entropy(logits, batch["labels"], label_smoothing)

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """Summed loss, count and correct predictions over the selected positions."""
        logits = model(batch["input_ids"]).logits
        loss, count = nll_sum(logits, batch["labels"])
        picked = batch["labels"] != IGNORE_INDEX
        correct = (logits.argmax(-1)[picked] == batch["labels"][picked]).sum()
        return {"loss_sum": loss, "count": float(count), "correct": float(correct)}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss and perplexity, plus the accuracy of the predictions at the selected positions."""
        out = super().summarize(sums)
        out["accuracy"] = sums["correct"] / max(sums["count"], 1.0)
        return out
