"""A run directory on disk: its file names, the checks before a run writes into it, and ``run.json``.

Plain file operations only, shared by the launcher (which writes runs) and evaluation (which reads what
a run recorded about the model it trained).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError

RUN_FILE = "run.json"
CACHE_DIR = "cache"
CHECKPOINT = Path("checkpoints") / "last.pt"
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


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that would be clobbered or cannot be resumed (nothing is written)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"nothing to resume: {out / CHECKPOINT} does not exist")
        return
    if not out.exists() or not any(p.name != CACHE_DIR for p in out.iterdir()):
        return
    if not (out / RUN_FILE).is_file():
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


def read_run_info(out: Path) -> dict[str, Any]:
    """The ``run.json`` of the run in ``out``."""
    return json.loads((out / RUN_FILE).read_text())


def find_run_info(model_dir: Path) -> dict[str, Any] | None:
    """The ``run.json`` of the run that wrote a model directory: the run itself (``out``) or the run above
    it (``out/best``); None for a model directory outside a run."""
    for run_dir in (model_dir, model_dir.parent):
        if (run_dir / RUN_FILE).is_file():
            return read_run_info(run_dir)
    return None
