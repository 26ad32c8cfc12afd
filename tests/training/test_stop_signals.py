"""SIGTERM stops training as Ctrl-C does: the step finishes, its checkpoint is written, `--resume` continues
exactly (real processes, real signals; under torchrun every rank stops after the same step)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tformer.cli import main
from tformer.training.checkpoint import load_checkpoint
from tformer.training.rundir import CHECKPOINT

from .helpers import TINY, losses, write_text
from .processes import finish, start, train_command, wait_for_step

#: checkpoints only at the end: the one a stopped run has is the one the signal made it write
SETS = [*TINY, "eval_every=100000", "checkpoint_every=100000", "log_every=1"]


def test_sigterm_finishes_the_step_saves_says_so_and_resumes_exactly(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "stopped"
    proc = start(train_command(data, out, "--max-steps", "60", sets=SETS))
    wait_for_step(proc, out, 3)
    proc.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(proc)
    assert code == 143, stderr  # 128 + SIGTERM, as a shell reports a process the signal ended
    step = load_checkpoint(out / CHECKPOINT)["step"]
    assert f"SIGTERM: stopped at step {step}; checkpoint saved in {out / CHECKPOINT}" in stderr
    assert "--resume" in stderr and "Traceback" not in stderr and "trained" not in stdout
    assert max(losses(out)) == step  # the step it saved is the last it logged
    assert 3 <= step < 60

    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    straight = ["train", "--data", str(data), "--out", str(tmp_path / "straight"), "--max-steps", "60"]
    assert main([*straight, "--no-progress", *(a for s in SETS for a in ("--set", s))]) == 0
    assert losses(out) == losses(tmp_path / "straight")  # bit for bit


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.is_file() else []


def _rank_of(pid: int) -> int | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [int(v.split(b"=", 1)[1]) for v in environ if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_under_torchrun_a_sigterm_to_one_rank_stops_every_rank_after_the_same_step(tmp_path, capsys):
    """Rank 1 alone receives SIGTERM; the stop flag is all-reduced, so rank 0 stops after the same step and
    saves it (without the agreement rank 0 would wait forever in the next step's all-reduce)."""
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "ddp"
    cmd = train_command(
        data, out, "--max-steps", "100000", "--device", "cpu", sets=[*SETS, "attn_bias=false"]
    )
    proc = start(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *cmd[1:]]
    )
    wait_for_step(proc, out, 3)
    deadline = time.monotonic() + 30
    workers: dict[int, int] = {}
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = {r: p for p in _children(proc.pid) if (r := _rank_of(p)) is not None}
    assert set(workers) == {0, 1}, workers
    subprocess.run(["kill", "-TERM", str(workers[1])], check=True)
    code, _, stderr = finish(proc)
    assert code != 0  # torchrun reports its workers' 143
    step = load_checkpoint(out / CHECKPOINT)["step"]
    assert f"SIGTERM: stopped at step {step}; checkpoint saved" in stderr  # rank 0's words
    assert max(losses(out)) == step
    capsys.readouterr()
    argv = ["train", "--out", str(out), "--resume", "--max-steps", str(step + 2), "--no-progress"]
    assert main([*argv, "--set", "decay_steps=100000"]) == 0  # the old horizon: continue from `step`
    assert sorted(losses(out)) == list(range(1, step + 3))
