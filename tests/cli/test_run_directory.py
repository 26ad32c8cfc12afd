"""What `tformer train` and `tformer demo` do with a run directory: never replace a run silently, leave
nothing behind when a start fails, clean up after a killed write, refuse other data on --resume, and give
a run resumed with a new --max-steps the schedule of a run of that length."""

import json
import shutil

import torch
from safetensors.torch import load_file

from tests.training.helpers import TINY, losses, rows, write_text
from tformer.cli import main
from tformer.training.rundir import CHECKPOINT, RUN_FILE
from tformer.training.runlock import LOCK_FILE

SMALL = [s for s in TINY if not s.startswith("warmup_steps")]  # the preset's own warm-up
DEMO = ["d_model=32", "n_heads=2", "d_ff=64", "n_layers=1", "batch_size=4", "block_size=32", "max_seq_len=32"]


def run(capsys, command, *args, sets=TINY):
    capsys.readouterr()
    argv = [command, *map(str, args), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def files(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


# ---- the demo follows train's policy -----------------------------------------------------------------
def test_demo_refuses_a_directory_holding_another_run_and_writes_nothing_there(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    mlm = tmp_path / "mlm"
    enc = ["d_model=32", "n_heads=2", "d_ff=64", "n_layers=1", "max_seq_len=32", "batch_size=4"]
    assert (
        run(capsys, "train", "--task", "mlm", "--data", data, "--out", mlm, "--max-steps", 1, sets=enc)[0]
        == 0
    )
    before = files(mlm)
    code, err = run(capsys, "demo", "--out", mlm, "--max-steps", 2, sets=DEMO)  # the built-in corpus
    assert code == 2 and "already holds a run (task mlm)" in err and "--overwrite" in err, err
    assert files(mlm) == before  # the BERT run is intact, and no corpus went into its cache/


def test_a_second_demo_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "demo"
    args = ("--data", data, "--out", out, "--max-steps", 2, "--tokens", 5)
    assert run(capsys, "demo", *args, sets=DEMO)[0] == 0
    before = files(out)
    code, err = run(capsys, "demo", *args, sets=DEMO)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert files(out) == before
    assert run(capsys, "demo", *args, "--overwrite", sets=DEMO)[0] == 0
    assert run(capsys, "demo", "--out", out, "--max-steps", 3, "--tokens", 5, "--resume", sets=[])[0] == 0
    assert sorted(losses(out)) == [2, 3]  # the demo logs every 10th step and the last


# ---- a failed start leaves nothing behind -------------------------------------------------------------
def test_a_failed_start_leaves_nothing_so_a_rerun_works(tmp_path, capsys):
    tiny = tmp_path / "two.txt"
    tiny.write_text("ab")
    out = tmp_path / "runs" / "a"
    code, err = run(capsys, "train", "--data", tiny, "--out", out, "--max-steps", 2)
    assert code == 2 and "fewer than block_size + 1" in err, err
    assert not out.exists()  # no run.json, no tokenizer, no cache/, no lock file
    code, err = run(capsys, "train", "--data", tiny, "--out", out, "--resume")
    assert code == 2 and "nothing to resume" in err
    assert not out.exists()
    data = write_text(tmp_path / "a.txt")
    assert (
        run(capsys, "train", "--data", data, "--out", out, "--max-steps", 2)[0] == 0
    )  # no --overwrite needed
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    assert run(capsys, "train", "--data", tiny, "--out", empty / "notes", "--max-steps", 2)[0] == 2
    assert list((empty / "notes").iterdir()) == []  # an existing directory is left as it was: empty


def test_a_run_stopped_before_its_first_checkpoint_says_to_start_over(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    assert run(capsys, "train", "--data", data, "--out", out, "--max-steps", 2)[0] == 0
    shutil.rmtree(out / "checkpoints")  # as after a kill -9 before the first checkpoint
    code, err = run(capsys, "train", "--out", out, "--resume", sets=[])
    assert code == 2 and "stopped before its first checkpoint" in err and "--overwrite" in err
    code, err = run(capsys, "train", "--data", data, "--out", out, "--max-steps", 2)
    assert code == 2 and "--resume" not in err and "--overwrite" in err


# ---- temporary files of a killed write ----------------------------------------------------------------
def test_the_next_start_removes_temporary_files_left_by_a_killed_write(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    assert run(capsys, "train", "--data", data, "--out", out, "--max-steps", 2)[0] == 0
    stale = [
        out / "checkpoints" / ".last.pt.k3j2h1.tmp",  # tformer.io.atomic_write's names
        out / ".config.json.a8s7d6.tmp",
        out / ".model.safetensors.x1y2z3.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    code, err = run(capsys, "train", "--out", out, "--resume", "--max-steps", 3, sets=[])
    assert code == 0, err
    assert "removed 3 temporary file(s) left by an interrupted write" in err
    assert not any(p.exists() for p in stale)
    assert not [p for p in out.rglob("*.tmp")]


# ---- --resume on other data ---------------------------------------------------------------------------
def test_resume_refuses_other_data_unless_asked(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    other = write_text(tmp_path / "b.txt", seed=1)
    out = tmp_path / "run"
    assert run(capsys, "train", "--data", data, "--out", out, "--max-steps", 2)[0] == 0
    recorded = json.loads((out / RUN_FILE).read_text())["data_fingerprint"]
    assert recorded[0]["hashed"] == "all" and recorded[0]["size"] == data.stat().st_size
    code, err = run(capsys, "train", "--data", other, "--out", out, "--resume", "--max-steps", 3, sets=[])
    assert code == 2 and "cannot resume on other data" in err and str(other) in err, err
    assert "--allow-data-change" in err and max(losses(out)) == 2
    data.write_text(data.read_text()[::-1])  # the same file, changed in place
    code, err = run(capsys, "train", "--out", out, "--resume", "--max-steps", 3, sets=[])
    assert code == 2 and "cannot resume on other data" in err
    moved = shutil.copy(other, tmp_path / "moved.txt")  # the same content elsewhere is the same data
    code, err = run(
        capsys,
        "train",
        "--data",
        other,
        "--out",
        out,
        "--resume",
        "--max-steps",
        3,
        "--allow-data-change",
        sets=[],
    )
    assert code == 0 and "resuming on other data (--allow-data-change)" in err, err
    assert json.loads((out / RUN_FILE).read_text())["data"] == [str(other.resolve())]
    assert run(capsys, "train", "--data", moved, "--out", out, "--resume", "--max-steps", 4, sets=[])[0] == 0
    assert max(losses(out)) == 4


# ---- extending a run -----------------------------------------------------------------------------------
def test_extending_a_run_equals_an_uninterrupted_run_of_the_new_length(tmp_path, capsys):
    """The README's `--max-steps 60` then `--max-steps 120 --resume` (gpt-tiny's own warm-up)."""
    data = write_text(tmp_path / "input.txt")
    a, straight = tmp_path / "a", tmp_path / "straight"
    common = ("--preset", "gpt-tiny", "--task", "clm", "--data", data)
    assert run(capsys, "train", *common, "--out", a, "--max-steps", 60, "--set", "seed=3", sets=SMALL)[0] == 0
    train_config = json.loads((a / RUN_FILE).read_text())["train_config"]
    assert train_config["warmup_steps"] == 10  # the tiny presets' warm-up fits their 60-step example
    lrs = {r["step"]: r["lr"] for r in rows(a)}
    assert lrs[60] < lrs[10]  # decayed: not a run of pure warm-up
    code, err = run(capsys, "train", "--out", a, "--max-steps", 120, "--resume", sets=[])
    assert code == 0, err
    assert "repeats steps 11-60" in err and "equals an uninterrupted 120-step run" in err
    assert (
        run(capsys, "train", *common, "--out", straight, "--max-steps", 120, "--set", "seed=3", sets=SMALL)[0]
        == 0
    )
    assert losses(a) == losses(straight)
    ours, theirs = load_file(a / "model.safetensors"), load_file(straight / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # bit for bit
    assert torch.load(a / CHECKPOINT, weights_only=True)["step"] == 120


def test_extending_with_the_old_horizon_continues_from_the_last_step(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    out = tmp_path / "a"
    assert run(capsys, "train", "--data", data, "--out", out, "--max-steps", 20)[0] == 0
    first = {r["step"]: r["loss"] for r in rows(out)}
    code, err = run(
        capsys, "train", "--out", out, "--max-steps", 30, "--resume", "--set", "decay_steps=20", sets=[]
    )
    assert code == 0 and "repeats" not in err and "resumed from step 20" in err, err
    after = losses(out)
    assert sorted(after) == list(range(1, 31)) and {s: after[s] for s in first} == first
    assert {r["step"]: r["lr"] for r in rows(out)}[25] == json.loads((out / RUN_FILE).read_text())[
        "train_config"
    ]["min_lr"]  # past the old horizon: the final rate


def test_the_lock_file_is_not_content(tmp_path, capsys):
    """A directory holding only a lock file (a start that was killed) counts as empty."""
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("{}")
    assert run(capsys, "train", "--data", data, "--out", out, "--max-steps", 1)[0] == 0
