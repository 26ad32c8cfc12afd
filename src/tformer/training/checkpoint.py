"""Training checkpoints: everything a resumed run needs to continue exactly where it stopped.

One file per checkpoint, written atomically with ``torch.save`` and read back only with
``torch.load(weights_only=True)``: model and optimizer state are tensors and plain numbers, RNG states are
tensors or tuples of ints, configs are plain dicts. Nothing pickled as code is ever executed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tformer.errors import CheckpointError, first_line
from tformer.io import atomic_write

FORMAT = "tformer-train-checkpoint"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """The states of every random generator a training step may touch, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    scheduler: dict[str, Any],
    train_config: dict[str, Any],
    trainer_state: dict[str, Any],
    data_position: dict[str, int],
) -> None:
    """Write a checkpoint atomically (a reader never sees a half-written file)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler,
        "train_config": train_config,
        "trainer_state": trainer_state,
        "data_position": data_position,
        "rng": rng_state(),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a one-line CheckpointError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file or pickled objects weights_only refuses
        first = first_line(e)
        raise CheckpointError(
            f"cannot read checkpoint {path} ({first}); the file is damaged or truncated: resume from a "
            "copy, or start over with --overwrite"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tformer training checkpoint")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer tformer (version {payload['version']}); upgrade"
        )
    return payload
