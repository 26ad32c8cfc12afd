"""`tformer train`, `tformer eval` and `tformer demo`, run as a user would (in-process and as a subprocess)."""

import json
import os
import subprocess
import sys

import pytest

import tformer
from tests.training.helpers import TINY, losses, rows, write_classify, write_pairs, write_text
from tformer.cli import main

ENC_TINY = [a for a in TINY if not a.startswith(("d_ff", "n_heads", "d_model"))] + [
    "d_model=32",
    "n_heads=2",
    "d_ff=64",
]


def train(*args, sets=TINY):
    argv = ["train", *map(str, args), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def _falls(out, factor=0.8):
    loss = losses(out)
    first, last = loss[min(loss)], loss[max(loss)]
    assert last < factor * first, (first, last)


def test_clm_trains_resumes_and_evaluates(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    out = tmp_path / "runs" / "a"
    assert (
        train(
            "--preset",
            "gpt-tiny",
            "--task",
            "clm",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            20,
            sets=[*TINY, "seed=3", "eval_every=10", "decay_steps=40"],
        )
        == 0
    )
    assert train("--out", out, "--max-steps", 40, "--resume", sets=[]) == 0
    assert sorted(losses(out)) == list(range(1, 41))
    _falls(out)
    # the directory is a model + tokenizer that generation can use
    model, tok = tformer.from_pretrained(out), tformer.load_tokenizer(out)
    assert model.config.vocab_size == tok.vocab_size == len(set(data.read_text())) + 1  # + <unk>
    ids = model.generate(__import__("torch").tensor([tok.encode("the ")]), max_new_tokens=5)
    assert ids.shape == (1, 9)
    for name in ("checkpoints/last.pt", "metrics.jsonl", "loss.png", "best/model.safetensors", "run.json"):
        assert (out / name).is_file(), name
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(data)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(printed["perplexity"]) == pytest.approx(2.718281828 ** float(printed["loss"]), rel=1e-3)
    assert float(printed["loss"]) < rows(out)[0]["loss"]


def test_mlm_trains(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    out = tmp_path / "mlm"
    assert (
        train(
            "--task",
            "mlm",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            80,
            sets=[*ENC_TINY, "eval_every=80", "lr=5e-3", "batch_size=16", "eval_batches=4"],
        )
        == 0
    )
    val = rows(out, "val")[-1]
    # few tokens are masked per step, and character MLM sits on a unigram plateau for a few hundred steps:
    # a tiny run only gets below the initial loss (ln V) to about the unigram entropy
    assert val["loss"] < 0.92 * rows(out)[0]["loss"]
    assert {"loss", "perplexity", "accuracy"} <= set(val)
    assert tformer.from_pretrained(out).config.head == "mlm"
    assert tformer.load_tokenizer(out).mask_token_id is not None


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_seq2seq_trains(tmp_path, suffix):
    data = write_pairs(tmp_path / f"pairs{suffix}")
    out = tmp_path / "s2s"
    assert (
        train(
            "--task",
            "seq2seq",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            30,
            sets=[*ENC_TINY, "eval_every=30", "label_smoothing=0.1"],
        )
        == 0
    )
    _falls(out)
    model, tok = tformer.from_pretrained(out), tformer.load_tokenizer(out)
    assert (
        model.config.decoder_start_token_id == tok.bos_token_id
        and model.config.pad_token_id == tok.pad_token_id
    )


def test_classification_trains_and_reports_accuracy(tmp_path, capsys):
    data = write_classify(tmp_path / "train.csv", n=300)
    out = tmp_path / "cls"
    assert (
        train(
            "--task",
            "classify",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            60,
            sets=[*ENC_TINY, "eval_every=60", "lr=3e-3", "batch_size=16", "eval_batches=4"],
        )
        == 0
    )
    _falls(out, 0.9)
    model = tformer.from_pretrained(out)
    assert model.config.head == "classification" and model.config.extra["labels"] == ["pets", "things"]
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(data)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert set(printed) == {"loss", "accuracy"} and float(printed["accuracy"]) > 0.6


@pytest.mark.slow
def test_copy_task_reaches_full_exact_match(tmp_path, capsys):
    out = tmp_path / "copy"
    assert (
        train(
            "--task",
            "copy",
            "--out",
            out,
            "--max-steps",
            300,
            sets=[
                "batch_size=32",
                "lr=3e-3",
                "min_lr=1e-4",
                "warmup_steps=30",
                "eval_every=300",
                "eval_batches=4",
                "num_threads=1",
            ],
        )
        == 0
    )
    assert rows(out, "val")[-1]["exact_match"] == 1.0
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--max-batches", "2"]) == 0  # fresh examples, no --data
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(printed["exact_match"]) == 1.0


def test_reverse_task_trains(tmp_path):
    out = tmp_path / "rev"
    assert (
        train(
            "--task",
            "reverse",
            "--out",
            out,
            "--max-steps",
            30,
            sets=[
                "batch_size=16",
                "lr=3e-3",
                "eval_every=30",
                "eval_batches=1",
                "num_threads=1",
                "synthetic_len=5",
                "log_every=1",
            ],
        )
        == 0
    )
    _falls(out)
    assert "exact_match" in rows(out, "val")[-1]


# ---- bad input: one line, exit code 2, nothing overwritten --------------------------------------------------
def _error(capsys, *args, sets=TINY):
    capsys.readouterr()
    assert train(*args, sets=sets) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tformer: error: ") and "\n" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    (tmp_path / "empty.txt").write_text("")
    out = tmp_path / "out"
    assert "does not exist" in _error(capsys, "--data", tmp_path / "missing.txt", "--out", out)
    assert "is empty" in _error(capsys, "--data", tmp_path / "empty.txt", "--out", out)
    assert "block_size=64 exceeds the model's context" in _error(
        capsys, "--data", data, "--out", out, sets=[*TINY, "block_size=64"]
    )
    assert "vocabulary mismatch" in _error(capsys, "--data", data, "--out", out, sets=[*TINY, "vocab_size=7"])
    err = _error(capsys, "--data", data, "--out", out, sets=[*TINY, "learning_rate=1"])
    assert "unknown --set key 'learning_rate'" in err and "lr" in err
    assert "trains an encoder model" in _error(
        capsys, "--task", "mlm", "--preset", "gpt-tiny", "--data", data, "--out", out
    )
    assert "nothing to resume" in _error(capsys, "--out", out, "--resume")
    assert not out.exists()  # no failed command created anything


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    out = tmp_path / "run"
    assert train("--data", data, "--out", out, "--max-steps", 2) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "already holds a run" in _error(capsys, "--data", data, "--out", out, "--max-steps", 2)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert train("--data", data, "--out", out, "--max-steps", 3, "--overwrite") == 0
    assert sorted(losses(out)) == [1, 2, 3]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "holds no tformer run" in _error(
        capsys, "--data", data, "--out", tmp_path / "other", "--overwrite"
    )
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_eval_refuses_a_tokenizer_that_does_not_match_the_model(tmp_path, capsys):
    data = write_text(tmp_path / "input.txt")
    out = tmp_path / "run"
    assert train("--data", data, "--out", out, "--max-steps", 1) == 0
    from tformer.tokenizers import CharTokenizer

    CharTokenizer.train("abc").save(out)
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(data)]) == 2
    assert "vocabulary mismatch" in capsys.readouterr().err


# ---- as a user runs it -----------------------------------------------------------------------------------
def test_train_as_a_subprocess_shows_progress(tmp_path):
    data = write_text(tmp_path / "input.txt")
    cmd = [
        sys.executable,
        "-m",
        "tformer.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "5",
    ]
    for s in [*TINY, "eval_every=5"]:
        cmd += ["--set", s]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "5/5" in proc.stderr and "loss=" in proc.stderr and "tok_s=" in proc.stderr  # the progress bar
    assert "trained 5 steps" in proc.stdout


def test_demo_trains_and_prints_a_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    small = [
        "d_model=32",
        "n_heads=2",
        "d_ff=64",
        "n_layers=1",
        "batch_size=4",
        "block_size=32",
        "max_seq_len=32",
        "eval_batches=1",
    ]
    # 100 characters from a 32-token context: the sampler must slide its window
    argv = ["demo", "--out", str(out), "--max-steps", "3", "--tokens", "100", "--no-progress"]
    for s in small:
        argv += ["--set", s]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "--- sample" in printed
    sample = printed.split("--- sample")[1].split("\n", 1)[1].rsplit("\n---", 1)[0]
    assert sample.startswith("The ")
    assert len(sample) >= 100
    assert json.loads((out / "run.json").read_text())["task"] == "clm"
    assert main(argv) == 2  # a second demo does not replace the first silently (tformer train's policy)
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
