"""Print statistics of tformer's import graph: modules, imports, cycles, upward lazy imports, longest functions.

The graph is grimp's (the one ``lint-imports`` checks): every ``import`` statement in ``src/tformer``, those
inside functions included, ``if TYPE_CHECKING:`` imports left out (they never run). A cycle is a strongly
connected component of two or more modules; it is listed by its members, and the same is done for the graph of
top-level subpackages (``tformer.models`` and everything under it as one node).

Usage::

    python tools/import_graph.py                 # the tformer that ``import tformer`` finds
    python tools/import_graph.py --src /tmp/old/src   # another checkout (e.g. ``git archive 6c323dc src``)

The figures are for reading (before/after a refactor); ``tests/test_layers.py`` checks the rules themselves.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "tformer"


@dataclass(frozen=True)
class LazyImport:
    """An import of a tformer module written inside a function."""

    importer: str
    imported: str
    line: int


@dataclass(frozen=True)
class Function:
    """A function (or method) and its length in lines, ``def`` to last line."""

    qualname: str
    module: str
    lines: int


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size >= 2, each sorted, largest first.

    Example: ``{"a": ["b"], "b": ["a", "c"], "c": []}`` -> ``[["a", "b"]]``.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        # iterative DFS: (node, iterator over its successors)
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def module_graph(package: str = PACKAGE, type_checking: bool = False) -> dict[str, set[str]]:
    """``{module: modules it imports}`` inside ``package``, as grimp (and so import-linter) sees it.

    ``type_checking`` counts ``if TYPE_CHECKING:`` imports too (the contracts leave them out).
    """
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=not type_checking, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def subpackage_graph(graph: Mapping[str, Iterable[str]], package: str = PACKAGE) -> dict[str, set[str]]:
    """The graph collapsed to ``package.<child>`` nodes (a subpackage and all it contains is one node)."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for importer, imported in graph.items():
        node = top(importer)
        out.setdefault(node, set()).update(top(m) for m in imported if top(m) != node)
    out.pop(package, None)  # the root re-exports everything; it is the public face, not a layer
    for targets in out.values():
        targets.discard(package)
    return out


def _modules(src: Path, package: str) -> Iterable[tuple[str, Path]]:
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def lazy_imports(src: Path, package: str = PACKAGE) -> list[LazyImport]:
    """Imports of ``package`` modules written inside a function body."""
    found = []
    for module, path in _modules(src, package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [_absolute(module, path.name == "__init__.py", node)]
                else:
                    continue
                for name in names:
                    if name == package or name.startswith(package + "."):
                        found.append(LazyImport(module, name, node.lineno))
    return sorted(set(found), key=lambda i: (i.importer, i.line, i.imported))


def _functions_in(node: ast.AST, module: str, prefix: str = "") -> Iterable[Function]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{child.name}"
            yield Function(name, module, child.end_lineno - child.lineno + 1)
            yield from _functions_in(child, module, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _functions_in(child, module, f"{prefix}{child.name}.")
        else:
            yield from _functions_in(child, module, prefix)


def functions(src: Path, package: str = PACKAGE) -> list[Function]:
    """Every function and method, longest first."""
    found = []
    for module, path in _modules(src, package):
        found += _functions_in(ast.parse(path.read_text(encoding="utf-8")), module)
    return sorted(found, key=lambda f: (-f.lines, f.module, f.qualname))


def report(src: Path, package: str = PACKAGE, top: int = 5, type_checking: bool = False) -> str:
    """The statistics as text."""
    graph = module_graph(package, type_checking)
    cycles = strongly_connected(graph)
    package_cycles = strongly_connected(subpackage_graph(graph, package))
    lazy = lazy_imports(src, package)
    funcs = functions(src, package)
    lines = [
        f"source: {src / package}" + (" (TYPE_CHECKING imports counted)" if type_checking else ""),
        f"modules: {len(graph)}",
        f"imports (module -> module, inside {package}): {sum(len(v) for v in graph.values())}",
        f"imports inside functions (of {package} modules): {len(lazy)}",
        f"module cycles (strongly connected components): {len(cycles)}, "
        f"{sum(len(c) for c in cycles)} modules in them",
    ]
    lines += [f"  {len(c)}: {', '.join(c)}" for c in cycles]
    lines.append(f"subpackage cycles: {len(package_cycles)}")
    lines += [f"  {len(c)}: {', '.join(c)}" for c in package_cycles]
    lines.append(f"functions: {len(funcs)}; longest:")
    lines += [f"  {f.lines} lines  {f.module}:{f.qualname}" for f in funcs[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="the src/ folder to analyse (default: the importable one)")
    parser.add_argument("--top", type=int, default=5, help="how many of the longest functions to list")
    parser.add_argument("--type-checking", action="store_true", help="count `if TYPE_CHECKING:` imports too")
    args = parser.parse_args(argv)
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        print(f"cannot find {PACKAGE}; pass --src", file=sys.stderr)
        return 2
    src = Path(spec.origin).resolve().parents[1]
    print(report(src, PACKAGE, args.top, args.type_checking))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
