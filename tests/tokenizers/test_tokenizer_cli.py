"""`tformer tokenizer train|encode|decode`, in process and once as a real subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tformer.cli import main
from tformer.tokenizers import iter_lines, load_tokenizer, train_bpe

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(
        "To be, or not to be, that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 20
    )
    return path


def run(argv: list[str], monkeypatch, capsys, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_encode_decode(corpus, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "tok"
    code, out, err = run(
        ["tokenizer", "train", "--data", str(corpus), "--vocab-size", "300", "--out", str(out_dir)],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "vocab_size 300" in out
    assert "merges" in err  # the tqdm progress bar goes to stderr
    tok = load_tokenizer(out_dir)
    text = "To be or not to be<|endoftext|>"
    code, out, _ = run(
        ["tokenizer", "encode", "--tokenizer", str(out_dir), "--allow-special"], monkeypatch, capsys, text
    )
    ids = [int(x) for x in out.split()]
    assert code == 0 and ids == tok.encode(text, allowed_special="all") and ids[-1] == 299
    code, out, _ = run(
        ["tokenizer", "decode", "--tokenizer", str(out_dir)], monkeypatch, capsys, " ".join(map(str, ids))
    )
    assert code == 0 and out == text
    code, out, _ = run(
        ["tokenizer", "encode", "--tokenizer", str(out_dir), "--lines"], monkeypatch, capsys, "a\nb c\n"
    )
    assert out.splitlines() == [" ".join(map(str, tok.encode(s))) for s in ("a", "b c")]


def test_train_char_tokenizer(corpus, tmp_path, monkeypatch, capsys):
    code, _, _ = run(
        ["tokenizer", "train", "--type", "char", "--data", str(corpus), "--out", str(tmp_path / "c")],
        monkeypatch,
        capsys,
    )
    tok = load_tokenizer(tmp_path / "c")
    assert code == 0 and tok.decode(tok.encode("To be")) == "To be"


def test_user_errors_are_one_line(corpus, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xc3\x28 broken\n")
    cases = [
        (
            ["tokenizer", "train", "--data", str(bad), "--vocab-size", "300", "--out", str(tmp_path / "x")],
            "",
            "byte offset 3",
        ),
        (
            ["tokenizer", "train", "--data", str(corpus), "--vocab-size", "10", "--out", str(tmp_path / "x")],
            "",
            "at least",
        ),
        (["tokenizer", "train", "--data", str(corpus), "--out", str(tmp_path / "x")], "", "--vocab-size"),
        (["tokenizer", "encode", "--tokenizer", str(tmp_path / "missing")], "x", "does not exist"),
    ]
    for argv, stdin, message in cases:
        code, _, err = run(
            argv + ["--no-progress"] if argv[1] == "train" else argv, monkeypatch, capsys, stdin
        )
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    train_bpe(iter_lines([corpus]), 300).save(tmp_path / "t")
    code, _, err = run(
        ["tokenizer", "decode", "--tokenizer", str(tmp_path / "t")], monkeypatch, capsys, "1 2 x"
    )
    assert code == 2 and "'x' is not an integer" in err
    code, _, err = run(
        ["tokenizer", "encode", "--tokenizer", str(tmp_path / "t")], monkeypatch, capsys, "<|endoftext|>"
    )
    assert code == 2 and "special token" in err


@pytest.mark.slow
def test_cli_as_subprocess(corpus, tmp_path):
    """One real process (python -m tformer.cli): stdin bytes in, ids out."""
    tok = train_bpe(iter_lines([corpus]), 280)
    tok.save(tmp_path / "sub")
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    text = "the question, 中文 🙂\n"
    enc = subprocess.run(
        [sys.executable, "-m", "tformer.cli", "tokenizer", "encode", "--tokenizer", str(tmp_path / "sub")],
        input=text.encode(),
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert enc.returncode == 0, enc.stderr
    assert [int(x) for x in enc.stdout.split()] == tok.encode(text)
