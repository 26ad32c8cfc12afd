"""AdamW with decoupled weight decay on weight matrices only, and learning-rate schedules.

Schedules are pure functions of the optimizer step (1 for the first update), so a resumed run recomputes
the same rate from the step alone: the "scheduler state" is the step counter.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tformer.peft.finetune import layerwise_groups
from tformer.training.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool = True) -> list[dict]:
    """Two AdamW groups: weight matrices with decay; biases, norm weights (and optionally embeddings) without.

    Tied parameters appear once. Example: a Linear's weight (2-D) decays, its bias (1-D) does not.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        is_embedding = id(p) in embeddings
        if p.dim() >= 2 and (decay_embeddings or not is_embedding):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``param_groups``; fused kernels where the device has them (CPU and CUDA in torch >= 2.4)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_embeddings)
    if cfg.layer_lr_decay < 1.0:
        groups = layerwise_groups(model, groups, cfg.layer_lr_decay)
    fused = cfg.fused_optimizer and device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The 2017 paper's rate: ``factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``.

    It rises linearly for ``warmup`` steps, peaks at ``factor * (d_model * warmup)^-0.5``, then decays as
    ``step^-0.5``. Example: ``noam_lr(4000, 512, 4000) ~= 7.0e-4``.
    """
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """Linear warmup from ``lr / warmup`` to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr`` at
    ``decay_steps``, constant after."""
    if step <= warmup:
        return lr * step / max(warmup, 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(decay_steps - warmup, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def constant_lr(step: int, lr: float, warmup: int) -> float:
    """Linear warmup, then ``lr``."""
    return lr * min(1.0, step / warmup) if warmup else lr


def lr_at(step: int, cfg: TrainConfig, d_model: int) -> float:
    """The learning rate of optimizer step ``step`` (1-based) under ``cfg.schedule``."""
    if cfg.schedule == "noam":
        return noam_lr(step, d_model, cfg.warmup_steps, cfg.lr)
    if cfg.schedule == "constant":
        return constant_lr(step, cfg.lr, cfg.warmup_steps)
    return cosine_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.decay_steps or cfg.max_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` times its ``lr_scale`` (layer-wise decay; 1 by default)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
