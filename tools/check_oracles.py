"""Run the test suite against the newest releases of the oracle packages and report what differs.

The suite compares tformer with Hugging Face ``transformers``, ``tokenizers`` and ``tiktoken`` at the exact
versions pinned in ``pyproject.toml`` (the lines of the ``test`` extra marked ``# oracle``). This script builds
a separate virtual environment (``.venv-oracles``), installs tformer with its test extra, upgrades every oracle
to its newest release, runs the suite there, and prints the versions side by side with the tests that fail
only on the newest releases (each rerun in the pinned ``.venv`` when that exists).

With ``--lowest`` it checks the other direction: the library's runtime dependencies keep ranges, and this
installs each at the lower bound ``pyproject.toml`` states (``torch>=X`` -> ``torch==X``) in ``.venv-lowest``
and runs the suite there, so that the lower bounds are ones the suite has actually passed with.

Usage::

    python3 tools/check_oracles.py            # whole suite on the newest oracles
    python3 tools/check_oracles.py tests/parity tests/generation/test_hf_parity.py
    python3 tools/check_oracles.py --lowest   # whole suite on the lowest runtime dependencies

Exit status: 0 when the newest oracles pass everything, 1 when some test differs, 2 when setup failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-oracles"
PINNED_VENV = ROOT / ".venv"


def pinned_oracles() -> dict[str, str]:
    """``{name: pinned version}`` for the test-extra lines of pyproject.toml marked ``# oracle``."""
    text = (ROOT / "pyproject.toml").read_text()
    return dict(re.findall(r'^\s*"([A-Za-z0-9_.-]+)==([^"]+)",\s*#\s*oracle\b', text, flags=re.M))


def lower_bounds() -> list[str]:
    """``name==lowest`` for each runtime dependency of pyproject.toml that states a ``>=`` bound."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    return [f"{n}=={v}" for n, v in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][^",<]*)', block)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kw)


def installed_version(python: Path, name: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "-"


def failures(junit: Path) -> list[str]:
    """Node ids of the failed or errored tests in a junit XML report."""
    if not junit.exists():
        return []
    ids = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = case.get("classname", "").replace(".", "/")
            ids.append(f"{module}.py::{case.get('name')}")
    return ids


def test_tools() -> list[str]:
    """The pinned test-extra lines that are not oracles (pytest, xdist, hypothesis, ruff)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("test = [", 1)[1].split("]", 1)[0]
    return [spec for spec, mark in re.findall(r'"([^"]+)",[ \t]*(#\s*oracle)?', block) if not mark]


def lowest(argv: list[str]) -> int:
    """Run the suite with every runtime dependency at its stated lower bound.

    The oracles need newer releases of some of them (transformers 5 asks for recent ``regex`` and
    ``safetensors``), so they are left out here: the test modules that import an oracle cannot be collected
    and are listed as such; everything else must pass.
    """
    venv = ROOT / ".venv-lowest"
    py = venv / "bin" / "python"
    bounds = lower_bounds()
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "-q", *bounds, *test_tools()],
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", "."],
    ]
    for step in steps:
        if run(step).returncode != 0:
            print("check_oracles: setup failed at the step above", file=sys.stderr)
            return 2
    junit = venv / "junit.xml"
    cmd = [
        str(py),
        "-m",
        "pytest",
        "-n",
        "2",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
    ]
    run([*cmd, f"--junitxml={junit}", *(argv or ["tests"])])
    root = ET.parse(junit).getroot() if junit.exists() else None
    cases = list(root.iter("testcase")) if root is not None else []
    oracle_names = ("transformers", "tokenizers", "tiktoken")
    needs_oracle, failed, passed = [], [], 0
    for case in cases:
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is None:
            passed += case.find("skipped") is None
        elif any(f"No module named '{n}" in (bad.get("message") or "") for n in oracle_names):
            needs_oracle.append(case.get("classname", ""))
        else:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    print("\nlower bounds: " + ", ".join(bounds))
    print(
        f"{passed} passed, {len(failed)} failed; modules needing an oracle (not installed): {len(needs_oracle)}"
    )
    for node in failed:
        print(f"- FAILED {node}")
    return 1 if failed or not passed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--lowest"]:
        return lowest(argv[1:])
    oracles = pinned_oracles()
    if not oracles:
        print("check_oracles: no '# oracle' pins found in pyproject.toml", file=sys.stderr)
        return 2
    py = VENV / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(py), "-m", "pip", "install", "-q", "torch==2.13.0"],
        [str(py), "-m", "pip", "install", "-q", "-e", ".[test]"],
        [str(py), "-m", "pip", "install", "-q", "--upgrade", *oracles],
    ]
    for step in steps:
        if run(step).returncode != 0:
            print("check_oracles: setup failed at the step above", file=sys.stderr)
            return 2
    junit = VENV / "junit.xml"
    targets = argv or ["tests"]
    run([str(py), "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *targets])
    failed = failures(junit)
    print("\n| oracle | pinned | newest |\n|---|---|---|")
    for name, pin in oracles.items():
        newest = installed_version(py, name)
        print(f"| {name} | {pin} | {newest}{'' if newest == pin else '  (newer)'} |")
    if not failed:
        print("\nEvery selected test passes on the newest oracles.")
        return 0
    pinned_py = PINNED_VENV / "bin" / "python"
    also_pinned: set[str] = set()
    if pinned_py.exists():
        pinned_junit = VENV / "junit-pinned.xml"
        run(
            [
                str(pinned_py),
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={pinned_junit}",
                *failed,
            ]
        )
        also_pinned = set(failures(pinned_junit))
    print(f"\n{len(failed)} test(s) fail on the newest oracles:")
    for node in failed:
        where = (
            "also fails on the pinned versions" if node in also_pinned else "passes on the pinned versions"
        )
        print(f"- {node} ({where if pinned_py.exists() else 'pinned run not available'})")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
