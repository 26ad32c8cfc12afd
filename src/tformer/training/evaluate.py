"""Evaluate a trained model on data files: loss and perplexity (accuracy for classification, exact match
for the synthetic tasks).

The caller loads the model and tokenizer (``tformer eval`` does, from a model directory); the directory's
run (``run.json``) supplies the task and block size it was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.training.config import TrainConfig
from tformer.training.rundir import find_run_info
from tformer.training.tasks import Task, TaskSetup, build_task, task_class
from tformer.training.tokenization import check_vocab


def infer_task(model_dir: Path, config: ModelConfig) -> str:
    """The task a model was trained for: from the run's ``run.json`` (the directory or its parent), else
    from the architecture and head."""
    info = find_run_info(model_dir)
    if info is not None:
        return info["task"]
    if config.arch == "decoder":
        return "clm"
    if config.arch == "encoder_decoder":
        return "seq2seq"
    if config.arch == "vit":
        return "image-classify"
    if config.head in ("mlm", "classification"):
        return "mlm" if config.head == "mlm" else "classify"
    raise ConfigError(f"cannot tell which task {model_dir} was trained for; pass --task")


def trained_block_size(model_dir: Path) -> int | None:
    """The block size of the run that trained the model in ``model_dir``, if it was a tformer run."""
    info = find_run_info(model_dir)
    return None if info is None else info["train_config"].get("block_size")


def evaluation_task(
    task: str,
    tokenizer: Any,
    config: ModelConfig,
    paths: Sequence[Path],
    batch_size: int,
    block_size: int,
    max_batches: int | None,
    seed: int = 0,
) -> Task:
    """A task whose evaluation batches cover ``paths`` (all of it, or the first ``max_batches`` batches)."""
    cfg = TrainConfig(
        task=task, batch_size=batch_size, block_size=block_size, seed=seed, eval_batches=max_batches or 1
    )
    setup = TaskSetup(cfg, tokenizer, config, paths, evaluate_only=True, max_eval_batches=max_batches)
    return build_task(setup)


@torch.no_grad()
def evaluate_model(
    model: Any,
    tokenizer: Any,
    model_dir: str | Path,
    data: Sequence[str],
    *,
    task: str | None = None,
    batch_size: int = 16,
    block_size: int | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (with ``tokenizer``, both loaded from ``model_dir``; None for a task that reads no
    text) on the files ``data``.

    Args:
        task: the task to evaluate (default: the one the model was trained for).
        block_size: tokens per example (default: the training block size, else the model's context).
        max_batches: evaluate at most this many batches (default: all the data; tasks that draw random
            examples use a fixed number).

    Raises:
        ConfigError: the tokenizer does not fit the model, the block exceeds the context, no batches.
    """
    model_dir = Path(model_dir)
    task = task or infer_task(model_dir, model.config)
    if task_class(task).uses_tokenizer:
        check_vocab(tokenizer, model.config, model_dir)
    block = block_size or trained_block_size(model_dir) or model.config.max_seq_len
    if block > model.config.max_seq_len:
        raise ConfigError(
            f"block_size={block} exceeds the model's context max_seq_len={model.config.max_seq_len}"
        )
    paths = [] if task_class(task).synthetic else task_class(task).check_data(data)
    evaluation = evaluation_task(task, tokenizer, model.config, paths, batch_size, block, max_batches)
    sums: dict[str, float] = {}
    for batch in evaluation.eval_batches():
        batch = {k: v.to(model.device) for k, v in batch.items()}
        for k, v in evaluation.eval_sums(model, batch).items():
            sums[k] = sums.get(k, 0.0) + v
    if not sums:
        raise ConfigError("no evaluation batches: the data is shorter than one block")
    return evaluation.summarize(sums)
