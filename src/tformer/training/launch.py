"""From a command line to a running Trainer: configs, the run directory, tokenizer, data, model.

A new run is first *prepared* by rank 0 (every check before anything is written; then the tokenizer and
``run.json`` go into the output directory); every process then *loads* the run from that directory, so a
fresh start and ``--resume`` share one path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError, TformerError
from tformer.io import atomic_write
from tformer.models import build
from tformer.presets import PRESETS, get_preset
from tformer.tokenizers import load_tokenizer
from tformer.training import distributed
from tformer.training.checkpoint import load_checkpoint
from tformer.training.config import TrainConfig
from tformer.training.devices import resolve_device
from tformer.training.finetune import (
    adapt,
    check_adaptation,
    head_architecture,
    pretrained_config,
    start_from,
)
from tformer.training.overrides import split_overrides
from tformer.training.rundir import CACHE_DIR, CHECKPOINT, RUN_FILE, check_out_dir, clear_run, read_run_info
from tformer.training.tasks import Task, TaskSetup, build_task, synthetic_tokenizer, task_class
from tformer.training.tasks.base import Record
from tformer.training.tokenization import check_vocab, make_tokenizer
from tformer.training.trainer import Trainer


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
    """A finished run: its directory, final evaluation metrics, last step, trained model and tokenizer."""

    out: Path
    metrics: dict[str, float]
    step: int
    model: Any
    tokenizer: Any


# ---- configs ----------------------------------------------------------------------------------------
def finalize_model_config(
    cfg: ModelConfig,
    train: TrainConfig,
    tok: Any,
    records: list[Record],
    explicit: dict[str, Any],
    pretrained: str | None = None,
) -> ModelConfig:
    """Fit the preset (or the ``pretrained`` directory's model) to the task and tokenizer: arch check,
    vocabulary, special ids, task head."""
    task = task_class(train.task)
    check_arch(cfg, train.task, pretrained)
    changes = {} if tok is None else token_changes(cfg, tok, explicit, pretrained)
    changes.update(task.model_changes(cfg, records, pretrained=pretrained is not None))
    return head_architecture(cfg.replace(**changes))


def check_arch(cfg: ModelConfig, task_name: str, pretrained: str | None) -> None:
    """Refuse a model of another family than the task trains."""
    task = task_class(task_name)
    if cfg.arch == task.arch:
        return
    if pretrained is not None:
        raise ConfigError(
            f"task {task_name!r} trains {_a(task.arch)} model but --init-from {pretrained} holds "
            f"{_a(cfg.arch)} model ({cfg.extra.get('hf_architecture', 'tformer')}), which cannot take its head"
        )
    raise ConfigError(
        f"task {task_name!r} trains {_a(task.arch)} model but the preset is {_a(cfg.arch)} "
        f"model; use e.g. --preset {task.default_preset}"
    )


def token_changes(
    cfg: ModelConfig, tok: Any, explicit: dict[str, Any], pretrained: str | None = None
) -> dict[str, Any]:
    """The vocabulary size and special ids the tokenizer sets; a mismatch with a fixed vocabulary is an error."""
    if pretrained is not None and tok.vocab_size != cfg.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: the tokenizer in {pretrained} has {tok.vocab_size} ids but its model has "
            f"vocab_size={cfg.vocab_size}"
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
    return changes


def _a(arch: str) -> str:
    return f"an {arch}" if arch[0] in "aeiou" else f"a {arch}"


def resolve_block_size(train: TrainConfig, model: ModelConfig) -> TrainConfig:
    """Default ``block_size`` to the model's context; refuse one longer than it."""
    synthetic = task_class(train.task).synthetic
    block = train.block_size or (train.synthetic_len + 1 if synthetic else model.max_seq_len)
    if block > model.max_seq_len:
        raise ConfigError(
            f"block_size={block} exceeds the model's context max_seq_len={model.max_seq_len}; "
            "lower block_size or raise max_seq_len"
        )
    if (
        synthetic
        and model.position in ("learned", "sinusoidal")
        and train.synthetic_len + 2 > model.max_seq_len
    ):
        # exact match generates the target and EOS after the start token: all within the positions
        raise ConfigError(
            f"synthetic_len={train.synthetic_len} leaves no room to generate the target, EOS and the start "
            f"token in max_seq_len={model.max_seq_len}; lower synthetic_len or raise max_seq_len"
        )
    return train.replace(block_size=block)


def run_flag_changes(spec: RunSpec) -> dict[str, Any]:
    """The TrainConfig changes the run flags ask for (``--max-steps``, ``--minutes``, ``--device``).

    ``--minutes`` applies to new runs: a resumed run keeps the budget it was started with (once final,
    already turned into ``max_steps``; ``--max-steps`` extends it).
    """
    changes: dict[str, Any] = {}
    if spec.max_steps is not None:
        changes["max_steps"] = spec.max_steps
    if spec.minutes is not None and not spec.resume:
        changes["max_minutes"] = spec.minutes
    if spec.device is not None:
        changes["device"] = spec.device
    return changes


# ---- new runs ---------------------------------------------------------------------------------------
def _new_train_config(spec: RunSpec, train_changes: dict[str, Any]) -> TrainConfig:
    task = spec.task or train_changes.pop("task", "clm")
    if "task" in train_changes and train_changes["task"] != task:
        raise ConfigError(f"--task {task} contradicts --set task={train_changes['task']}")
    train_changes.pop("task", None)
    return TrainConfig(task=task, **{**train_changes, **run_flag_changes(spec), **_finetune_changes(spec)})


def _finetune_changes(spec: RunSpec) -> dict[str, Any]:
    """The TrainConfig changes of ``--init-from``, ``--lora`` and ``--freeze`` (recorded for the run)."""
    changes: dict[str, Any] = {
        name: getattr(spec, name) for name in ("init_from", "lora") if getattr(spec, name)
    }
    if spec.freeze:
        changes["freeze"] = list(spec.freeze)
    return changes


def _base_model_config(
    spec: RunSpec, train: TrainConfig, model_changes: dict[str, Any]
) -> tuple[str | None, ModelConfig]:
    """(preset name or None, the config a new run starts from): the ``--init-from`` model's or a preset's."""
    if spec.init_model is not None:
        if spec.preset is not None:
            raise ConfigError("--preset and --init-from both name a model; pass one")
        return None, pretrained_config(spec.init_model, str(spec.init_from), model_changes)
    preset = spec.preset or task_class(train.task).default_preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available presets: {', '.join(sorted(PRESETS))}")
    return preset, get_preset(preset, **model_changes)


def _data_and_tokenizer(spec: RunSpec, train: TrainConfig) -> tuple[list[Path], Any, list[Record]]:
    """The data, the run's tokenizer (the pretrained model's, one trained on the texts, the synthetic one, or
    None for a task without) and the data's records."""
    task = task_class(train.task)
    if task.synthetic:
        if spec.data:
            raise ConfigError(f"the {train.task} task makes its own data; drop --data")
        return [], synthetic_tokenizer(train.synthetic_symbols), []
    paths = task.check_data(spec.data)
    texts, records = task.read_inputs(paths)
    if not task.uses_tokenizer:
        return paths, None, records
    if spec.init_model is not None:
        return paths, pretrained_tokenizer(str(spec.init_from)), records
    tok = make_tokenizer(train.tokenizer, train.task, texts, train.tokenizer_vocab_size, spec.out / CACHE_DIR)
    return paths, tok, records


def pretrained_tokenizer(directory: str) -> Any:
    """The tokenizer stored beside a pretrained model."""
    try:
        return load_tokenizer(directory)
    except (TformerError, FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--init-from {directory} holds no tokenizer tformer can read ({e})") from None


def prepare_new_run(spec: RunSpec) -> None:
    """Check everything, then write the tokenizer and ``run.json`` into ``spec.out`` (rank 0 only)."""
    model_changes, train_changes = split_overrides(spec.overrides)
    train = _new_train_config(spec, train_changes)
    preset, base = _base_model_config(spec, train, model_changes)
    check_out_dir(spec.out, resume=False, overwrite=spec.overwrite)
    paths, tok, records = _data_and_tokenizer(spec, train)
    pretrained = str(spec.init_from) if spec.init_model is not None else None
    model_cfg = finalize_model_config(base, train, tok, records, model_changes, pretrained)
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
    atomic_write(spec.out / RUN_FILE, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2) + "\n"))


# ---- loading a prepared or resumed run --------------------------------------------------------------
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
    train = TrainConfig.from_dict(payload["train_config"]).replace(
        **{**train_changes, **run_flag_changes(spec)}
    )
    return train, ModelConfig.from_dict(payload["model_config"])


def load_run(spec: RunSpec) -> tuple[TrainConfig, ModelConfig, Any, list[Path]]:
    """The training config, model config, tokenizer and data files of the run in ``spec.out``."""
    info = read_run_info(spec.out)
    if spec.resume:
        train, model_cfg = _resume_configs(spec, info)
    else:
        train = TrainConfig.from_dict(info["train_config"])
        model_cfg = ModelConfig.from_dict(info["model_config"])
    task = task_class(train.task)
    tok = load_tokenizer(spec.out) if task.uses_tokenizer else None
    if tok is not None:
        check_vocab(tok, model_cfg, spec.out)
    if task.synthetic:
        return train, model_cfg, tok, []
    return train, model_cfg, tok, task.check_data(spec.data if spec.resume and spec.data else info["data"])


def run_training(spec: RunSpec) -> RunResult:
    """Train (or resume) the run described by ``spec``; returns the final metrics and the trained model."""
    spec.out = Path(spec.out)
    dist = distributed.init(resolve_device(spec.device or "auto", distributed.env_info().local_rank))
    check_out_dir(spec.out, spec.resume, spec.overwrite)
    distributed.barrier(dist)  # every process checks before rank 0 writes anything
    if not spec.resume and dist.is_main:
        prepare_new_run(spec)
    distributed.barrier(dist)
    train, model_cfg, tok, paths = load_run(spec)
    task = _build_task_everywhere(TaskSetup(train, tok, model_cfg, paths, spec.out / CACHE_DIR), dist)
    torch.manual_seed(train.seed)  # the same initial weights on every process
    model = build(model_cfg, init=not spec.resume)
    _fine_tune(model, spec, train, dist.is_main)
    trainer = Trainer(model, task, train, spec.out, tokenizer=tok, log=spec.log, progress=spec.progress)
    if spec.resume:
        trainer.restore()
    metrics = trainer.fit()
    return RunResult(spec.out, metrics, trainer.state.step, trainer.model, tok)


def _fine_tune(model: Any, spec: RunSpec, train: TrainConfig, is_main: bool) -> None:
    """A new run copies the ``--init-from`` weights; every run (resumed too, before its checkpoint is restored)
    adds its LoRA adapters and freezes what it asks, and rank 0 logs what trains."""
    log = spec.log or logging.getLogger("tformer.training").info
    if spec.init_model is not None and not spec.resume:
        start_from(model, spec.init_model, log if is_main else lambda _: None)
    trainable = adapt(model, train)
    if is_main and (train.lora or train.freeze or train.init_from):
        log(trainable)


def _build_task_everywhere(setup: TaskSetup, dist: distributed.DistInfo) -> Task:
    """Rank 0 builds the token cache first; the others then open it."""
    if dist.is_main:
        task = build_task(setup)
    distributed.barrier(dist)
    if not dist.is_main:
        task = build_task(setup)
    return task
