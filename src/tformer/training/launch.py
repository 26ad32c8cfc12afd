"""From a command line to a running Trainer: configs, the run directory, tokenizer, data, model.

A new run is first *prepared* by rank 0 (every check before anything is written; then the tokenizer and
``run.json`` go into the output directory); every process then *loads* the run from that directory, so a
fresh start and ``--resume`` share one path.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError, TformerError
from tformer.presets import PRESETS, get_preset
from tformer.training import distributed
from tformer.training.checkpoint import load_checkpoint
from tformer.training.config import TrainConfig
from tformer.training.finetune import adapt, check_adaptation, fit_head, pretrained_config, start_from
from tformer.training.overrides import split_overrides
from tformer.training.tasks.base import Task
from tformer.training.tasks.files import check_files, read_records, read_text
from tformer.training.tokenization import make_tokenizer
from tformer.training.trainer import CHECKPOINT, Trainer, resolve_device

RUN_FILE = "run.json"
CACHE_DIR = "cache"
DEFAULT_PRESET = {
    "clm": "gpt-tiny",
    "mlm": "bert-tiny",
    "classify": "bert-tiny",
    "seq2seq": "transformer-tiny",
    "copy": "transformer-tiny",
    "reverse": "transformer-tiny",
    "image-classify": "vit-tiny",
}
# files a run writes at the top of its directory (removed by --overwrite; cache/ is kept)
_RUN_FILES = (
    RUN_FILE,
    "metrics.jsonl",
    "loss.png",
    "config.json",
    "model.safetensors",
    "tformer_tokenizer.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer_config.json",
)
_RUN_DIRS = ("checkpoints", "best", "adapter")
_RECORD_FIELDS = {"seq2seq": ("source", "target"), "classify": ("text", "label")}


@dataclass
class RunSpec:
    """What ``tformer train`` was asked to do. None means "the default" (new run) or "as saved" (resume)."""

    out: Path
    task: str | None = None
    preset: str | None = None
    data: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False
    max_steps: int | None = None
    minutes: float | None = None
    device: str | None = None
    progress: bool = True
    log: Callable[[str], None] | None = None
    # fine-tuning: the pretrained model to start from (loaded by the caller) and the directory it came from
    init_model: Any = None
    init_from: str | None = None
    freeze: list[str] = field(default_factory=list)
    lora: str | None = None


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, float]
    step: int
    model: Any
    tokenizer: Any


# ---- the output directory ---------------------------------------------------------------------------
def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that would be clobbered or cannot be resumed (nothing is written)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    is_run = (out / RUN_FILE).is_file()
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"nothing to resume: {out / CHECKPOINT} does not exist")
        return
    if not out.exists() or not any(p.name != CACHE_DIR for p in out.iterdir()):
        return
    if not is_run:
        raise ConfigError(
            f"--out {out} is not empty and holds no tformer run; choose a new or empty directory"
        )
    if not overwrite:
        info = json.loads((out / RUN_FILE).read_text())
        raise ConfigError(
            f"--out {out} already holds a run (task {info.get('task')}); pass --resume to continue "
            "it or --overwrite to start over"
        )


def clear_run(out: Path) -> None:
    """Delete a previous run's files (known names only; the token cache stays)."""
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)


# ---- configs ----------------------------------------------------------------------------------------
def finalize_model_config(
    cfg: ModelConfig,
    train: TrainConfig,
    tok: Any,
    labels: list[str] | None,
    explicit: dict[str, Any],
    pretrained: str | None = None,
) -> ModelConfig:
    """Fit the preset (or the ``pretrained`` directory's model) to the task and tokenizer: arch check,
    vocabulary, special ids, task head."""
    if pretrained is not None and cfg.arch != train.arch:
        raise ConfigError(
            f"task {train.task!r} trains {_a(train.arch)} model but --init-from {pretrained} holds "
            f"{_a(cfg.arch)} model ({cfg.extra.get('hf_architecture', 'tformer')}), which cannot take its head"
        )
    if pretrained is not None and tok.vocab_size != cfg.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: the tokenizer in {pretrained} has {tok.vocab_size} ids but its model has "
            f"vocab_size={cfg.vocab_size}"
        )
    if cfg.arch != train.arch:
        suggestion = DEFAULT_PRESET[train.task]
        raise ConfigError(
            f"task {train.task!r} trains {_a(train.arch)} model but the preset is {_a(cfg.arch)} "
            f"model; use e.g. --preset {suggestion}"
        )
    if "vocab_size" in explicit and explicit["vocab_size"] != tok.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: the tokenizer has {tok.vocab_size} ids but vocab_size="
            f"{explicit['vocab_size']}; drop the vocab_size override (it is set from the tokenizer)"
        )
    changes: dict[str, Any] = {
        "vocab_size": tok.vocab_size,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if cfg.arch == "encoder_decoder":
        changes["decoder_start_token_id"] = (
            tok.bos_token_id if tok.bos_token_id is not None else tok.pad_token_id
        )
    cfg = cfg.replace(**changes)
    if train.task == "mlm":
        cfg = fit_head(cfg, "mlm")
    elif train.task == "classify":
        cfg = fit_head(cfg, "classification", len(labels or []), labels)
    return cfg


def _a(arch: str) -> str:
    return f"an {arch}" if arch[0] in "aeiou" else f"a {arch}"


def resolve_block_size(train: TrainConfig, model: ModelConfig) -> TrainConfig:
    """Default ``block_size`` to the model's context; refuse one longer than it."""
    block = train.block_size or (train.synthetic_len + 1 if train.synthetic else model.max_seq_len)
    if block > model.max_seq_len:
        raise ConfigError(
            f"block_size={block} exceeds the model's context max_seq_len={model.max_seq_len}; "
            "lower block_size or raise max_seq_len"
        )
    return train.replace(block_size=block)


def check_vocab(tok: Any, model_cfg: ModelConfig, where: Path) -> None:
    if tok.vocab_size != model_cfg.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: the tokenizer in {where} has {tok.vocab_size} ids but the model "
            f"has vocab_size={model_cfg.vocab_size}"
        )


# ---- data -------------------------------------------------------------------------------------------
def read_inputs(task: str, paths: list[Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """(texts for the tokenizer, records for seq2seq/classify)."""
    if task in _RECORD_FIELDS:
        records = [r for p in paths for r in read_records(p, _RECORD_FIELDS[task])]
        texts = [t for r in records for t in (r if task == "seq2seq" else r[:1])]
        return texts, records
    return [read_text(p) for p in paths], []


def build_task(
    cfg: TrainConfig,
    tok: Any,
    model_cfg: ModelConfig,
    paths: list[Path],
    cache: Path | None,
    sequential_eval: bool = False,
) -> Task:
    """The Task object for ``cfg.task`` over ``paths`` (tokenised through ``cache`` for text tasks)."""
    from tformer.training import tasks

    common = dict(batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, seed=cfg.seed)
    if cfg.task == "image-classify":
        from tformer.training.tasks.images import build_image_task

        return build_image_task([str(p) for p in paths], cfg)
    if cfg.synthetic:
        return tasks.SyntheticTask(
            cfg.task, cfg.synthetic_symbols, cfg.synthetic_len, tok, eval_batches=cfg.eval_batches, **common
        )
    if cfg.task in ("clm", "mlm"):
        from tformer.training.tasks.clm import load_text_tokens

        train_ids, val_ids = load_text_tokens(paths, tok, cache, cfg.val_fraction)
        if cfg.task == "clm":
            return tasks.CLMTask(
                train_ids,
                val_ids,
                cfg.block_size,
                eval_batches=cfg.eval_batches,
                sequential_eval=sequential_eval,
                **common,
            )
        return tasks.MLMTask(
            train_ids,
            val_ids,
            cfg.block_size,
            tok,
            eval_batches=cfg.eval_batches,
            probability=cfg.mlm_probability,
            **common,
        )
    _, records = read_inputs(cfg.task, paths)
    train_idx, val_idx = split_examples_for(len(records), cfg)
    if cfg.task == "seq2seq":
        from tformer.training.tasks.seq2seq import encode_pairs

        pairs = encode_pairs(records, tok, cfg.block_size)
        return tasks.Seq2SeqTask(
            [pairs[i] for i in train_idx],
            [pairs[i] for i in val_idx],
            model_cfg.decoder_start_token_id,
            tok.eos_token_id,
            tok.pad_token_id,
            eval_batches=cfg.eval_batches,
            **common,
        )
    from tformer.training.tasks.classify import encode_examples

    examples = encode_examples(records, tok, model_cfg.extra["labels"], cfg.block_size)
    return tasks.ClassifyTask(
        [examples[i] for i in train_idx],
        [examples[i] for i in val_idx],
        tok.pad_token_id,
        eval_batches=cfg.eval_batches,
        **common,
    )


def pretrained_tokenizer(directory: str) -> Any:
    """The tokenizer stored beside a pretrained model."""
    from tformer.tokenizers import load_tokenizer

    try:
        return load_tokenizer(directory)
    except (TformerError, FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--init-from {directory} holds no tokenizer tformer can read ({e})") from None


def split_examples_for(n: int, cfg: TrainConfig) -> tuple[list[int], list[int]]:
    from tformer.training.tasks.seq2seq import split_examples

    if cfg.val_fraction == 0.0:
        return list(range(n)), []
    return split_examples(n, cfg.val_fraction, cfg.seed)


# ---- new runs and resumed runs ----------------------------------------------------------------------
def _new_train_config(spec: RunSpec, train_changes: dict[str, Any]) -> TrainConfig:
    task = spec.task or train_changes.pop("task", "clm")
    if "task" in train_changes and train_changes["task"] != task:
        raise ConfigError(f"--task {task} contradicts --set task={train_changes['task']}")
    train_changes.pop("task", None)
    if spec.max_steps is not None:
        train_changes["max_steps"] = spec.max_steps
    if spec.minutes is not None:
        train_changes["max_minutes"] = spec.minutes
    if spec.device is not None:
        train_changes["device"] = spec.device
    for name in ("init_from", "lora"):
        if getattr(spec, name) is not None:
            train_changes[name] = getattr(spec, name)
    if spec.freeze:
        train_changes["freeze"] = list(spec.freeze)
    return TrainConfig(task=task, **train_changes)


def prepare_new_run(spec: RunSpec) -> None:
    """Check everything, then write the tokenizer and ``run.json`` into ``spec.out`` (rank 0 only)."""
    from tformer.training.tasks.synthetic import synthetic_tokenizer

    model_changes, train_changes = split_overrides(spec.overrides)
    train = _new_train_config(spec, train_changes)
    if spec.init_model is not None and spec.preset is not None:
        raise ConfigError("--preset and --init-from both name a model; pass one")
    preset = spec.preset or DEFAULT_PRESET[train.task]
    if spec.init_model is not None:
        preset, base = None, pretrained_config(spec.init_model, spec.init_from, model_changes)
    elif preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available presets: {', '.join(sorted(PRESETS))}")
    else:
        base = get_preset(preset, **model_changes)
    check_out_dir(spec.out, resume=False, overwrite=spec.overwrite)
    image_data = None
    if train.synthetic:
        if spec.data:
            raise ConfigError(f"the {train.task} task makes its own data; drop --data")
        paths, tok, labels = [], synthetic_tokenizer(train.synthetic_symbols), None
    elif train.task == "image-classify":
        from tformer.training.tasks.images import load_sources

        paths, tok, labels, image_data = [Path(d) for d in spec.data], None, None, load_sources(spec.data)
    else:
        paths = check_files(spec.data)
        texts, records = read_inputs(train.task, paths)
        if spec.init_model is not None:
            tok = pretrained_tokenizer(spec.init_from)
        else:
            tok = make_tokenizer(
                train.tokenizer, train.task, texts, train.tokenizer_vocab_size, spec.out / CACHE_DIR
            )
        labels = None
        if train.task == "classify":
            from tformer.training.tasks.classify import label_names

            labels = label_names([r[1] for r in records])
    if image_data is not None:
        from tformer.training.tasks.images import fit_image_config

        model_cfg = fit_image_config(base, image_data, keep_size=spec.init_model is not None)
        model_cfg = fit_head(model_cfg, "classification", model_cfg.num_labels, model_cfg.extra["labels"])
    else:
        model_cfg = finalize_model_config(base, train, tok, labels, model_changes, spec.init_from)
    check_adaptation(model_cfg, train)
    train = resolve_block_size(train, model_cfg)
    if spec.overwrite and spec.out.exists():
        clear_run(spec.out)
    spec.out.mkdir(parents=True, exist_ok=True)
    if tok is not None:
        tok.save(spec.out)
    info = {
        "format": "tformer-run",
        "version": 1,
        "task": train.task,
        "preset": preset,
        "data": [str(p.resolve()) for p in paths],
        "train_config": train.to_dict(),
        "model_config": model_cfg.to_dict(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (spec.out / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _resume_configs(spec: RunSpec, info: dict[str, Any]) -> tuple[TrainConfig, ModelConfig]:
    """The saved configs, with the few changes a resumed run may make (steps, device, training knobs)."""
    payload = load_checkpoint(spec.out / CHECKPOINT)
    model_changes, train_changes = split_overrides(spec.overrides)
    if model_changes:
        raise ConfigError(f"the model of a run cannot change on --resume (got {sorted(model_changes)})")
    for name, given in (("task", spec.task or train_changes.get("task")), ("preset", spec.preset)):
        if given is not None and given != info.get(name):
            raise ConfigError(f"--out {spec.out} holds a {info.get(name)} run; it cannot resume as {given}")
    train_changes.pop("task", None)
    if spec.max_steps is not None:
        train_changes["max_steps"] = spec.max_steps
    if spec.device is not None:
        train_changes["device"] = spec.device
    train = TrainConfig.from_dict(payload["train_config"]).replace(**train_changes)
    return train, ModelConfig.from_dict(payload["model_config"])


def run_training(spec: RunSpec) -> RunResult:
    """Train (or resume) the run described by ``spec``; returns the final metrics and the trained model."""
    from tformer import build, load_tokenizer

    spec.out = Path(spec.out)
    dist = distributed.init(resolve_device(spec.device or "auto", distributed.env_info().local_rank))
    check_out_dir(spec.out, spec.resume, spec.overwrite)
    distributed.barrier(dist)  # every process checks before rank 0 writes anything
    if not spec.resume and dist.is_main:
        prepare_new_run(spec)
    distributed.barrier(dist)
    info = json.loads((spec.out / RUN_FILE).read_text())
    if spec.resume:
        train, model_cfg = _resume_configs(spec, info)
    else:
        train, model_cfg = (
            TrainConfig.from_dict(info["train_config"]),
            ModelConfig.from_dict(info["model_config"]),
        )
    images = train.task == "image-classify"
    tok = None if images else load_tokenizer(spec.out)
    if tok is not None:
        check_vocab(tok, model_cfg, spec.out)
    data = spec.data if spec.resume and spec.data else info["data"]
    paths = [] if train.synthetic else [Path(d) for d in data] if images else check_files(data)
    task = _build_task_everywhere(train, tok, model_cfg, paths, spec.out / CACHE_DIR, dist)
    torch.manual_seed(train.seed)  # the same initial weights on every process
    model = build(model_cfg, init=not spec.resume)
    log = spec.log or logging.getLogger("tformer.training").info
    if spec.init_model is not None and not spec.resume:
        start_from(model, spec.init_model, log if dist.is_main else lambda _: None)
    trainable = adapt(model, train)
    if dist.is_main and (train.lora or train.freeze or train.init_from):
        log(trainable)
    trainer = Trainer(model, task, train, spec.out, tokenizer=tok, log=spec.log, progress=spec.progress)
    if spec.resume:
        trainer.restore()
    metrics = trainer.fit()
    return RunResult(spec.out, metrics, trainer.state.step, trainer.model, tok)


def _build_task_everywhere(
    train: TrainConfig,
    tok: Any,
    model_cfg: ModelConfig,
    paths: list[Path],
    cache: Path,
    dist: distributed.DistInfo,
) -> Task:
    """Rank 0 builds the token cache first; the others then open it."""
    if dist.is_main:
        task = build_task(train, tok, model_cfg, paths, cache)
    distributed.barrier(dist)
    if not dist.is_main:
        task = build_task(train, tok, model_cfg, paths, cache)
    return task
