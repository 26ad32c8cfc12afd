"""Evaluate a trained model directory on a data file: loss and perplexity (accuracy for classification)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.training.config import TrainConfig
from tformer.training.tasks.base import Task


def infer_task(model_dir: Path, config: ModelConfig) -> str:
    """The task a model was trained for: from the run's ``run.json`` (the directory or its parent), else
    from the architecture and head."""
    for run_file in (model_dir / "run.json", model_dir.parent / "run.json"):
        if run_file.is_file():
            return json.loads(run_file.read_text())["task"]
    if config.arch == "decoder":
        return "clm"
    if config.arch == "encoder_decoder":
        return "seq2seq"
    if config.head in ("mlm", "classification"):
        return "mlm" if config.head == "mlm" else "classify"
    raise ConfigError(f"cannot tell which task {model_dir} was trained for; pass --task")


def build_eval_task(
    task: str,
    tok: Any,
    config: ModelConfig,
    paths: list[Path],
    batch_size: int,
    block_size: int,
    max_batches: int | None,
    seed: int = 0,
) -> Task:
    """A task whose evaluation batches cover ``paths`` (all of it, or the first ``max_batches`` batches)."""
    from tformer.training import tasks
    from tformer.training.launch import read_inputs

    cfg = TrainConfig(
        task=task, batch_size=batch_size, block_size=block_size, seed=seed, eval_batches=max_batches or 1
    )
    common = dict(batch_size=batch_size, grad_accum=1, seed=seed)
    n_batches = max_batches or 10**9
    if cfg.synthetic:
        n_sym = len(getattr(tok, "chars", [])) or cfg.synthetic_symbols
        return tasks.SyntheticTask(task, n_sym, block_size - 1, tok, eval_batches=max_batches or 20, **common)
    if task in ("clm", "mlm"):
        from tformer.training.tasks.clm import load_text_tokens

        _, ids = load_text_tokens(paths, tok, None, val_fraction=1.0)
        empty = ids[:0]
        if task == "clm":
            return tasks.CLMTask(
                empty, ids, block_size, eval_batches=max_batches, sequential_eval=True, **common
            )
        return tasks.MLMTask(empty, ids, block_size, tok, eval_batches=max_batches or 50, **common)
    _, records = read_inputs(task, paths)
    if task == "seq2seq":
        from tformer.training.tasks.seq2seq import encode_pairs

        pairs = encode_pairs(records, tok, block_size)
        start = (
            config.decoder_start_token_id if config.decoder_start_token_id is not None else tok.bos_token_id
        )
        return tasks.Seq2SeqTask(
            pairs, pairs, start, tok.eos_token_id, tok.pad_token_id, eval_batches=n_batches, **common
        )
    from tformer.training.tasks.classify import encode_examples

    labels = config.extra.get("labels") or [str(i) for i in range(config.num_labels)]
    examples = encode_examples(records, tok, labels, block_size)
    return tasks.ClassifyTask(examples, examples, tok.pad_token_id, eval_batches=n_batches, **common)


@torch.no_grad()
def evaluate_directory(
    model_dir: str | Path,
    data: list[str],
    *,
    task: str | None = None,
    batch_size: int = 16,
    block_size: int | None = None,
    max_batches: int | None = None,
    device: str = "cpu",
    dtype: str = "auto",
) -> dict[str, float]:
    """Metrics of the model in ``model_dir`` (with its tokenizer) on ``data``, loaded as ``dtype``."""
    from tformer import from_pretrained, load_tokenizer
    from tformer.training.launch import check_vocab
    from tformer.training.tasks.files import check_files

    model_dir = Path(model_dir)
    model = from_pretrained(model_dir, device=device, dtype=dtype)
    tok = load_tokenizer(model_dir)
    check_vocab(tok, model.config, model_dir)
    task = task or infer_task(model_dir, model.config)
    block = block_size or _trained_block_size(model_dir) or model.config.max_seq_len
    if block > model.config.max_seq_len:
        raise ConfigError(
            f"block_size={block} exceeds the model's context max_seq_len={model.config.max_seq_len}"
        )
    paths = [] if task in ("copy", "reverse") else check_files(data)
    evaluation = build_eval_task(task, tok, model.config, paths, batch_size, block, max_batches)
    sums: dict[str, float] = {}
    for batch in evaluation.eval_batches():
        batch = {k: v.to(device) for k, v in batch.items()}
        for k, v in evaluation.eval_sums(model, batch).items():
            sums[k] = sums.get(k, 0.0) + v
    if not sums:
        raise ConfigError("no evaluation batches: the data is shorter than one block")
    return evaluation.summarize(sums)


def _trained_block_size(model_dir: Path) -> int | None:
    for run_file in (model_dir / "run.json", model_dir.parent / "run.json"):
        if run_file.is_file():
            return json.loads(run_file.read_text())["train_config"].get("block_size")
    return None
