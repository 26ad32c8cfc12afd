"""The import layering: the import-linter contracts of pyproject.toml hold, and no module import cycle exists."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _import_graph_tool():
    """tools/import_graph.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tformer_import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _lint_imports() -> str:
    beside_python = Path(sys.executable).with_name("lint-imports")
    found = str(beside_python) if beside_python.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    return found


def test_import_contracts_hold():
    """`lint-imports` (layers, training/interop independence, acyclic packages) passes on this checkout."""
    # analyse this checkout's src/, whatever tformer an installed environment points at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    report = proc.stdout[proc.stdout.find("Contracts") :] + proc.stderr
    assert proc.returncode == 0 and "kept, 0 broken" in report, report


def test_no_module_import_cycles():
    """No strongly connected component in the module graph, imports inside functions included.

    import-linter's acyclic contract looks at siblings; this also catches a module importing its own
    package's ``__init__`` while that imports it back.
    """
    tool = _import_graph_tool()
    assert tool.strongly_connected(tool.module_graph("tformer")) == []


def test_cycle_finder_finds_cycles():
    """The cycle finder the test above relies on reports every cycle, with its members, largest first."""
    tool = _import_graph_tool()
    graph = {"a": ["b"], "b": ["a", "c"], "c": ["d"], "d": ["e"], "e": ["c"], "f": ["f", "a"], "g": []}
    assert tool.strongly_connected(graph) == [["c", "d", "e"], ["a", "b"]]
    assert tool.strongly_connected({"x": ["y"], "y": []}) == []
    # a long chain must not hit Python's recursion limit
    chain = {str(i): [str(i + 1)] for i in range(5000)}
    chain["5000"] = ["0"]
    assert len(tool.strongly_connected(chain)[0]) == 5001
