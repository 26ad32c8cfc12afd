"""Where a run computes: the device, whether it autocasts to bf16, and batches moved and split onto it."""

from __future__ import annotations

import torch

from tformer.errors import TformerError
from tformer.training.tasks.base import Batch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TformerError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: always for ``bf16`` (where the device supports it), on capable GPUs for ``auto``."""
    if precision == "fp32":
        return False
    supported = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    if precision == "bf16" and not supported:
        raise TformerError(f"precision bf16 is not supported on {device}; use --set precision=fp32")
    return supported and (precision == "bf16" or device.type == "cuda")


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def shard_rows(batch: Batch, rank: int, world_size: int) -> Batch | None:
    """This process's share of an evaluation batch (uneven splits allowed); None if it gets no rows."""
    if world_size == 1:
        return batch
    n = next(iter(batch.values())).shape[0]
    idx = torch.arange(rank, n, world_size)
    if len(idx) == 0:
        return None
    return {k: v[idx] for k, v in batch.items()}
