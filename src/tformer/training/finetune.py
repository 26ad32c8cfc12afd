"""Fine-tuning a run: start from pretrained weights, then add LoRA adapters and freeze what the run asks.

The same steps run on a new run (after copying the pretrained weights) and on ``--resume`` (before the
checkpoint is restored), so a resumed run has the same trainable parameters and optimizer groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.models import build
from tformer.peft import LoraConfig, add_lora
from tformer.peft.finetune import describe_trainable, freeze, transfer_weights
from tformer.peft.hf_names import architecture_with_head
from tformer.training.config import TrainConfig

# heads a task trains from scratch: LoRA runs train (and save) them in full, as PEFT's task types do
_TASK_HEADS = ("classification", "token_classification")


def lora_config(train: TrainConfig, model_cfg: ModelConfig) -> LoraConfig:
    """The run's LoRA config; a classification head (and the pooler feeding it) is trained in full unless the
    spec names other modules to save."""
    cfg = LoraConfig.parse(train.lora)
    if not cfg.modules_to_save and model_cfg.head in _TASK_HEADS:
        cfg.modules_to_save = ["head", "pooler"] if model_cfg.pooler else ["head"]
    return cfg


def adapt(model: nn.Module, train: TrainConfig) -> str:
    """Add the run's LoRA adapters and freeze its frozen parts (in place); returns the trainable count line."""
    if train.lora:
        add_lora(model, lora_config(train, model.config))
    for spec in train.freeze:
        freeze(model, spec)
    return describe_trainable(model)


def check_adaptation(model_cfg: ModelConfig, train: TrainConfig) -> None:
    """Try the run's LoRA and freeze specs on a weightless copy of the model: bad specs fail before any file
    is written."""
    with torch.device("meta"):
        model = build(model_cfg, init=False)
    adapt(model, train)


def start_from(model: nn.Module, pretrained: nn.Module, log: Callable[[str], None]) -> None:
    """Copy the pretrained weights into the run's model; say which tensors start from scratch (a new head)."""
    fresh = transfer_weights(model, pretrained)
    if fresh:
        more = f" and {len(fresh) - 3} more" if len(fresh) > 3 else ""
        log(f"new (randomly initialised): {', '.join(fresh[:3])}{more}")


def pretrained_config(pretrained: Any, source: str, model_changes: dict[str, Any]) -> ModelConfig:
    """The config a run starts from: the pretrained model's, with the run's ``--set`` changes."""
    cfg = getattr(pretrained, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"--init-from {source} did not give a tformer model")
    return cfg.replace(**model_changes) if model_changes else cfg


def head_architecture(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` naming the Hugging Face class of its family that has its head (for adapter files):
    a BertModel given a classification head becomes BertForSequenceClassification."""
    architecture = cfg.extra.get("hf_architecture")
    if not architecture:
        return cfg
    return cfg.replace(extra={**cfg.extra, "hf_architecture": architecture_with_head(architecture, cfg.head)})


def fit_head(
    cfg: ModelConfig, head: str, num_labels: int | None = None, labels: list[str] | None = None
) -> ModelConfig:
    """``cfg`` with the task's head (and the Hugging Face architecture that has that head, for adapter files)."""
    changes: dict[str, Any] = {"head": head}
    if num_labels is not None:
        changes.update(num_labels=num_labels, extra={**cfg.extra, "labels": list(labels or [])})
    return head_architecture(cfg.replace(**changes))
