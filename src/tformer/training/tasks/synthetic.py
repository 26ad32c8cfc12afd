"""Synthetic sequence-to-sequence tasks for demos and tests: copy (the Annotated Transformer's) and reverse.

Each example is ``synthetic_len`` random symbols; the target is the source itself (copy) or the source
reversed. Symbols are letters and digits, so the tokenizer is a ``CharTokenizer`` and the trained model
can be prompted with text (``"abcde"`` -> ``"edcba"``). Evaluation adds exact match: the share of
examples whose greedy decoding equals the target (EOS included).
"""

from __future__ import annotations

import string
from typing import Any

import torch

from tformer.errors import ConfigError
from tformer.training.tasks.base import Batch, TaskSetup, generator
from tformer.training.tasks.seq2seq import Seq2SeqTask, greedy_decode

ALPHABET = string.ascii_lowercase + string.digits + string.ascii_uppercase
SPECIALS = ("<pad>", "<s>", "</s>")


def synthetic_tokenizer(n_symbols: int):
    """A CharTokenizer over the first ``n_symbols`` symbols (ids 0..n-1) plus <pad>, <s>, </s>."""
    from tformer.tokenizers import CharTokenizer

    if not 2 <= n_symbols <= len(ALPHABET):
        raise ConfigError(f"synthetic_symbols must be in [2, {len(ALPHABET)}], got {n_symbols}")
    return CharTokenizer(list(ALPHABET[:n_symbols]), SPECIALS)


class SyntheticTask(Seq2SeqTask):
    """Copy or reverse random symbol sequences; an endless stream of fresh examples."""

    synthetic = True
    tokenizer_roles = ("pad", "bos", "eos")
    best_metric, larger_is_better = "exact_match", True
    eval_keys = ("loss_sum", "count", "exact", "examples")
    #: batches of fresh examples to evaluate on when evaluating a model with no batch limit
    default_eval_batches = 20

    def __init__(
        self,
        kind: str,
        n_symbols: int,
        length: int,
        tokenizer: Any,
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int,
    ) -> None:
        if kind not in ("copy", "reverse"):
            raise ConfigError(f"unknown synthetic task {kind!r}; choose copy or reverse")
        self.name, self.n_symbols, self.length = kind, n_symbols, length
        self.batch_size, self.grad_accum, self.seed, self.n_eval = batch_size, grad_accum, seed, eval_batches
        self.start_id, self.eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self._eval = None

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> SyntheticTask:
        """The task from the config; a trained model is evaluated on its own symbols and block size."""
        cfg = setup.config
        n_symbols, length = cfg.synthetic_symbols, cfg.synthetic_len
        if setup.evaluate_only:  # a trained model: its tokenizer's symbols, examples that fill its block
            n_symbols = len(getattr(setup.tokenizer, "chars", [])) or n_symbols
            length = cfg.block_size - 1
        return cls(
            cfg.task,
            n_symbols,
            length,
            setup.tokenizer,
            **setup.batching(),
            eval_batches=setup.n_eval_batches(cls.default_eval_batches),
        )

    def _examples(self, gen: torch.Generator) -> Batch:
        src = torch.randint(0, self.n_symbols, (self.batch_size, self.length), generator=gen)
        tgt = src if self.name == "copy" else src.flip(1)
        return self.collate([(s + [self.eos_id], t) for s, t in zip(src.tolist(), tgt.tolist())])

    def train_batch(self, step: int, micro: int) -> Batch:
        """Fresh random examples from a generator seeded by (seed, step, micro)."""
        return self._examples(generator(self.seed, step, micro))

    def make_eval_batches(self) -> list[Batch]:
        """``eval_batches`` batches of fresh examples from a fixed seed."""
        gen = generator(self.seed, -1)
        return [self._examples(gen) for _ in range(self.n_eval)]

    def eval_sums(self, model: Any, batch: Batch) -> dict[str, float]:
        """The teacher-forced sums plus the examples whose greedy decoding equals the labels, EOS included."""
        sums = super().eval_sums(model, batch)
        labels = batch["labels"]
        pred = greedy_decode(
            model, batch["input_ids"], batch["attention_mask"], self.start_id, labels.shape[1]
        )
        sums["exact"] = float((pred == labels).all(dim=1).sum())
        sums["examples"] = float(labels.shape[0])
        return sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss and perplexity, plus ``exact_match``: the share of examples decoded exactly."""
        out = super().summarize(sums)
        out["exact_match"] = sums["exact"] / max(sums["examples"], 1.0)
        return out
