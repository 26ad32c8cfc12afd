"""Shared pieces of the result scripts (results_*.py): run a `tformer` command timed, describe the machine,
and write a script's section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "RESULTS.md"


def tformer_command(*args: object) -> list[str]:
    """``python -m tformer.cli ARGS`` with this interpreter (the command a reader can paste)."""
    return [sys.executable, "-m", "tformer.cli", *map(str, args)]


def shown(cmd: list[str]) -> str:
    """The command as a user types it: ``tformer ...``."""
    args = cmd[3:] if cmd[1:3] == ["-m", "tformer.cli"] else cmd
    return "tformer " + shlex.join(args)


def run(cmd: list[str], threads: int) -> tuple[float, str, str]:
    """Run a command with ``threads`` intra-op threads; returns (wall seconds, stdout, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    print(f"$ {shown(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {shown(cmd)}")
    return wall, proc.stdout, proc.stderr


def trainable_line(log: str) -> tuple[int, int]:
    """(trainable, total) from the training log's ``trainable parameters: X of Y`` line."""
    m = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+)", log)
    if not m:
        raise SystemExit("the training log has no trainable-parameter line")
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def machine(threads: int) -> str:
    """CPU model, cores used and software versions, for the record."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        m = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = m.group(1).strip() if m else cpu
    import torch

    return (
        f"{cpu}, {threads} threads of {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section of RESULTS.md between ``<!-- name -->`` and ``<!-- /name -->``."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.is_file() else "# Results\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(f"wrote the {name} section of {RESULTS}", file=sys.stderr)


def package_dir(package: str, extra: str = "results") -> Path:
    """The installed folder of a data/weights package, without importing it (a clear message if missing)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"this script needs the package {package!r}: pip install 'tformer[{extra}]'")
    return Path(list(spec.submodule_search_locations)[0])
