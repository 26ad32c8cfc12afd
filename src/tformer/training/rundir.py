"""A run directory on disk: its file names, the checks before a run writes into it, and ``run.json``.

Plain file operations only, shared by the launcher (which writes runs) and evaluation (which reads what
a run recorded about the model it trained). Also: removing the temporary files of a write that a killed
process left behind, and undoing what a failed start created.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError
from tformer.training.runlock import LOCK_FILE

RUN_FILE = "run.json"
CACHE_DIR = "cache"
CHECKPOINT = Path("checkpoints") / "last.pt"
#: the model and optimizer at the end of warm-up, the point up to which a cosine schedule does not depend
#: on the run's length: where extending a run's length (``--max-steps N --resume``) continues from
WARMUP_CHECKPOINT = Path("checkpoints") / "warmup.pt"
# entries that do not make a directory "not empty" (the token cache, the lock of a run starting in it)
_BOOKKEEPING = (CACHE_DIR, LOCK_FILE)
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
            if (out / RUN_FILE).is_file():  # started, then stopped (kill -9) before its first checkpoint
                raise ConfigError(
                    f"nothing to resume: the run in {out} stopped before its first checkpoint "
                    f"({out / CHECKPOINT} does not exist); start it again with --overwrite"
                )
            raise ConfigError(f"nothing to resume: {out / CHECKPOINT} does not exist")
        return
    if not out.exists() or all(p.name in _BOOKKEEPING or is_stale_temporary(p) for p in out.iterdir()):
        return
    if not (out / RUN_FILE).is_file():
        raise ConfigError(
            f"--out {out} is not empty and holds no tformer run; choose a new or empty directory"
        )
    if not overwrite:
        info = read_run_info(out)
        hint = "--resume to continue it or " if (out / CHECKPOINT).is_file() else ""
        raise ConfigError(
            f"--out {out} already holds a run (task {info.get('task')}); pass {hint}--overwrite to start over"
        )


def clear_run(out: Path) -> None:
    """Delete a previous run's files (known names only; the token cache stays)."""
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)


def read_run_info(out: Path) -> dict[str, Any]:
    """The ``run.json`` of the run in ``out`` (a one-line ConfigError when it is not valid JSON)."""
    path = out / RUN_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); the run's record is damaged") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path} is not a run record (a JSON {type(info).__name__}, not an object)")
    return info


def is_stale_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of ``tformer.io.atomic_write`` (``.NAME.RANDOM.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files that writes interrupted by a kill left anywhere in the run directory.

    Only safe while holding the run's lock: then no process of this run is writing. Returns what it removed.
    """
    removed = []
    for root, _, files in os.walk(out):
        for name in files:
            path = Path(root) / name
            if is_stale_temporary(path):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class StartUndo:
    """Remembers what a run directory held before a run started, so that a failed start can delete
    exactly what it created (a rerun then finds the directory as it was)."""

    def __init__(self, out: Path, created_dir: bool, created: tuple[str, ...] = ()) -> None:
        """``created``: names already in ``out`` that this start made (its lock file)."""
        self.out, self.created_dir = out, created_dir
        self.before = set() if created_dir else _all_paths(out) - {out / name for name in created}

    def undo(self) -> None:
        """Delete every file and directory that appeared since (the directory itself if it was new)."""
        if self.created_dir:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        new = sorted(_all_paths(self.out) - self.before, key=lambda p: len(p.parts), reverse=True)
        for path in new:  # deepest first, so directories are empty when their turn comes
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _all_paths(out: Path) -> set[Path]:
    paths = set()
    for root, dirs, files in os.walk(out):
        paths |= {Path(root) / n for n in dirs + files}
    return paths


def find_run_info(model_dir: Path) -> dict[str, Any] | None:
    """The ``run.json`` of the run that wrote a model directory: the run itself (``out``) or the run above
    it (``out/best``); None for a model directory outside a run."""
    for run_dir in (model_dir, model_dir.parent):
        if (run_dir / RUN_FILE).is_file():
            return read_run_info(run_dir)
    return None
