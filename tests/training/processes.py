"""Real `tformer train` processes for the tests of locks and signals: start one, wait until it trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .helpers import TINY

ROOT = Path(__file__).resolve().parents[2]

#: a run that takes minutes unless stopped, saving a checkpoint after every step
LONG = [*TINY, "checkpoint_every=1", "eval_every=100000", "log_every=1"]


def env() -> dict[str, str]:
    """This checkout's sources first, one thread per process."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def train_command(data: Path, out: Path, *args: str, sets: list[str] = LONG) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "tformer.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
    ]
    for s in sets:
        cmd += ["--set", s]
    return [*cmd, *args]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 120.0) -> int:
    """Wait until ``out/metrics.jsonl`` records training step ``step`` (or later); returns the last one."""
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.communicate()[1]}")
        if metrics.is_file():
            steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]
            if steps and max(steps) >= step:
                return max(steps)
        time.sleep(0.01)
    raise AssertionError(f"no step {step} in {timeout} s")


def finish(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
