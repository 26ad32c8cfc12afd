"""Sequence-to-sequence training with teacher forcing (the 2017 Transformer, T5, BART).

For a (source, target) pair the encoder reads the source (plus EOS), the decoder reads the target shifted
right behind the start token, and predicts the target plus EOS::

    decoder_input_ids = [start] + target
    labels            = target + [eos]

Batches are right-padded on both sides with attention masks; padded label positions are -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tformer.training.losses import IGNORE_INDEX, nll_sum, token_cross_entropy
from tformer.training.tasks.base import Batch, ExampleTask, TaskSetup, pad_rows

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


def greedy_decode(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start_id: int, max_len: int
) -> torch.Tensor:
    """Greedy decoding of an encoder-decoder through ``model.generate`` (cached): (B, max_len) new ids.

    Exactly ``max_len`` tokens per row: no EOS stops a row early (what follows an EOS is still the argmax),
    so the output lines up with a batch's ``labels``.
    """
    if attention_mask is None:  # every source token is real, pad ids included
        attention_mask = torch.ones_like(input_ids)
    # in the weights' dtype even inside a bf16 autocast region (training's evaluation): generate's caches
    # are allocated in that dtype and take no keys and values of another
    with torch.autocast(input_ids.device.type, enabled=False):
        out = model.generate(
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_len,
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=start_id,
            eos_token_id=[],  # an empty list, not None (None falls back to the model's EOS)
        )  # (B, 1 + max_len): the start token, then the new ids
    return out[:, 1:]


class Seq2SeqTask(ExampleTask):
    """Teacher-forced cross-entropy on (source, target) id pairs, padding-aware label smoothing."""

    name = "seq2seq"
    arch, default_preset = "encoder_decoder", "transformer-tiny"
    tokenizer_specials, unk_token = ("<pad>", "<s>", "</s>", "<unk>"), "<unk>"
    tokenizer_roles = ("pad", "eos")
    record_fields, text_fields = ("source", "target"), 2

    def __init__(
        self,
        train: Sequence[Pair],
        val: Sequence[Pair],
        start_id: int,
        eos_id: int,
        pad_id: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int | None,
    ) -> None:
        super().__init__(train, val, batch_size, grad_accum, seed, eval_batches)
        self.start_id, self.eos_id, self.pad_id = start_id, eos_id, pad_id

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> Seq2SeqTask:
        """Encode and split the (source, target) records; decoding starts at the model's start id or BOS."""
        cfg, tok = setup.config, setup.tokenizer
        _, records = cls.read_inputs(setup.paths)
        train, val = cls.split(encode_pairs(records, tok, cfg.block_size), setup)
        start = setup.model_config.decoder_start_token_id
        return cls(
            train,
            val,
            start if start is not None else tok.bos_token_id,
            tok.eos_token_id,
            tok.pad_token_id,
            **setup.batching(),
            eval_batches=setup.n_eval_batches(),
        )

    def collate(self, pairs: Sequence[Pair]) -> Batch:
        """A padded teacher-forcing batch (see the module docstring)."""
        return collate_pairs(pairs, self.start_id, self.eos_id, self.pad_id)

    def _logits(self, model: Any, batch: Batch) -> torch.Tensor:
        return model(
            batch["input_ids"],
            batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
            decoder_attention_mask=batch["decoder_attention_mask"],
        ).logits  # (B, T, V)

    def loss(self, model: Any, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean teacher-forced cross-entropy; label smoothing leaves out the padding token's class."""
        return token_cross_entropy(
            self._logits(model, batch), batch["labels"], label_smoothing, pad_token_id=self.pad_id
        )

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """Summed loss and label count (padding excluded)."""
        loss, count = nll_sum(self._logits(model, batch), batch["labels"])
        return {"loss_sum": loss, "count": float(count)}

    def n_tokens(self, batch: Batch) -> int:
        """Real (unpadded) source and decoder tokens of the batch."""
        return int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())
