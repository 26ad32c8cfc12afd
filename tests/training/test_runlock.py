"""A run directory is owned by one process at a time (real processes: a live run, kill -9, torchrun)."""

import os
import socket
import subprocess
import sys

import pytest

from tformer.cli import main
from tformer.training.runlock import LOCK_FILE, RunLock

from .helpers import TINY, losses, rows, write_text
from .processes import env, start, train_command, wait_for_step


def _train(capsys, *args, sets=TINY):
    capsys.readouterr()
    argv = ["train", *map(str, args), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_live_run_refuses_a_second_train_overwrite_and_resume_then_kill_9_frees_it(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    proc = start(train_command(data, out, "--max-steps", "100000"))
    try:
        wait_for_step(proc, out, 2)
        run_json = (out / "run.json").read_bytes()
        for extra in ([], ["--overwrite"], ["--resume"]):
            code, err = _train(
                capsys, "--data", data, "--out", out, "--max-steps", 3, "--set", "seed=2", *extra
            )
            assert code == 2, err
            assert f"--out {out} is in use by a running tformer process (pid {proc.pid} on " in err
            assert socket.gethostname() in err and "started 20" in err and "\n" not in err.strip()
        assert (out / "run.json").read_bytes() == run_json  # nothing of the second run's was written
    finally:
        proc.kill()  # SIGKILL: no handler runs, the kernel drops the lock with the process
        proc.wait()
    assert (out / LOCK_FILE).is_file()  # left behind, but unlocked: nothing to clean up
    last = max(losses(out))
    code, err = _train(capsys, "--out", out, "--resume", "--max-steps", last + 2, sets=[])
    assert code == 0, err
    steps = [r["step"] for r in rows(out)]
    assert steps == list(range(1, last + 3))  # one run's lines, in order, none interleaved


def test_the_lock_is_released_when_a_run_ends_and_is_per_process(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        assert not RunLock(out).try_acquire()  # a second open file in the same process is refused too
    second = RunLock(out)
    assert second.try_acquire()
    second.release()


@pytest.mark.slow
def test_under_torchrun_every_rank_agrees_that_the_directory_is_taken(tmp_path):
    """Only rank 0 tries the lock; the others learn its answer and fail alike (nobody hangs)."""
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    with RunLock(out) as held:
        held.record()
        cmd = train_command(data, out, "--max-steps", "2", "--device", "cpu")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *cmd[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env())
    assert proc.returncode != 0
    message = f"is in use by a running tformer process (pid {os.getpid()} on {socket.gethostname()}"
    assert proc.stderr.count(message) == 2, proc.stderr  # both ranks
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
