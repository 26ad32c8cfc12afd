"""Data-parallel training with ``torch.distributed``, configured from the environment ``torchrun`` sets.

One process per device; gloo on CPU, nccl on CUDA. Rank 0 alone logs, writes checkpoints and metrics; the
others wait at barriers. With ``WORLD_SIZE`` unset or 1, every function here is a cheap no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the data-parallel group: rank, world size and its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains (collectives are needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that logs and writes files."""
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (torchrun's variables)."""
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (if any); returns this process's place in it."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl collectives run on this process's own GPU
        dist.init_process_group(backend=backend, init_method="env://")
    return info


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every process reaches this point (a no-op when training alone)."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum plain numbers over processes (float64 so that sums of losses stay exact)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_int(value: int, info: DistInfo, device: torch.device) -> int:
    """Rank 0's ``value`` on every process."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """The model wrapped in ``DistributedDataParallel`` (gradients averaged over processes), or unchanged."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
