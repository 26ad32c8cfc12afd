"""Sequence-to-sequence training with teacher forcing (the 2017 Transformer, T5, BART).

For a (source, target) pair the encoder reads the source (plus EOS), the decoder reads the target shifted
right behind the start token, and predicts the target plus EOS::

    decoder_input_ids = [start] + target
    labels            = target + [eos]

Batches are right-padded on both sides with attention masks; padded label positions are -100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tformer.errors import DataError
from tformer.training.losses import IGNORE_INDEX, nll_sum, token_cross_entropy
from tformer.training.tasks.base import Batch, ExampleTask, generator, pad_rows

Pair = tuple[list[int], list[int]]


def encode_pairs(records: Sequence[tuple[str, str]], tokenizer: Any, block_size: int) -> list[Pair]:
    """Token ids of (source, target) texts: the source ends with EOS; both fit ``block_size``."""
    eos = tokenizer.eos_token_id
    pairs = []
    for src, tgt in records:
        s = tokenizer.encode_ordinary(src)[: block_size - (eos is not None)]
        t = tokenizer.encode_ordinary(tgt)[: block_size - 1]
        pairs.append((s + ([eos] if eos is not None else []), t))
    return pairs


def collate_pairs(pairs: Sequence[Pair], start_id: int, eos_id: int, pad_id: int) -> Batch:
    """Padded teacher-forcing batch of id pairs (see the module docstring)."""
    src, src_mask = pad_rows([s for s, _ in pairs], pad_id)
    dec, dec_mask = pad_rows([[start_id, *t] for _, t in pairs], pad_id)
    labels, _ = pad_rows([[*t, eos_id] for _, t in pairs], IGNORE_INDEX)
    return {
        "input_ids": src,
        "attention_mask": src_mask,
        "decoder_input_ids": dec,
        "decoder_attention_mask": dec_mask,
        "labels": labels,
    }


def split_examples(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, val indices): a seeded random ``val_fraction`` (at least one) held out."""
    if n < 2 and val_fraction > 0:
        raise DataError(f"need at least 2 examples to hold some out for validation, got {n}")
    perm = torch.randperm(n, generator=generator(seed, -2)).tolist()
    n_val = max(1, math.floor(n * val_fraction)) if val_fraction > 0 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def greedy_decode(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start_id: int, max_len: int
) -> torch.Tensor:
    """Greedy decoding of an encoder-decoder without a cache (short outputs): (B, max_len) new ids."""
    memory = model.encode(input_ids, attention_mask)
    out = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long, device=input_ids.device)
    for _ in range(max_len):
        logits = model.decode(out, memory, attention_mask).logits[:, -1]  # (B, V)
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out[:, 1:]


class Seq2SeqTask(ExampleTask):
    """Teacher-forced cross-entropy on (source, target) id pairs, padding-aware label smoothing."""

    name = "seq2seq"

    def __init__(
        self,
        train: list[Pair],
        val: list[Pair],
        start_id: int,
        eos_id: int,
        pad_id: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int,
    ) -> None:
        super().__init__(train, val, batch_size, grad_accum, seed, eval_batches)
        self.start_id, self.eos_id, self.pad_id = start_id, eos_id, pad_id

    def collate(self, pairs: Sequence[Pair]) -> Batch:
        return collate_pairs(pairs, self.start_id, self.eos_id, self.pad_id)

    def _logits(self, model: Any, batch: Batch) -> torch.Tensor:
        return model(
            batch["input_ids"],
            batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
            decoder_attention_mask=batch["decoder_attention_mask"],
        ).logits  # (B, T, V)

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        return token_cross_entropy(
            self._logits(model, batch), batch["labels"], label_smoothing, pad_token_id=self.pad_id
        )

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        loss, count = nll_sum(self._logits(model, batch), batch["labels"])
        return {"loss_sum": loss, "count": float(count)}

    def n_tokens(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())
