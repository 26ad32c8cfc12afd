"""The loader: CPU feature detection, the choice of instruction set, build names, shipped sources."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tformer.kernels import loader

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse2
"""


def test_cpu_flags_come_from_the_first_processor():
    assert loader.parse_cpu_flags(CPUINFO) == {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"}
    assert loader.parse_cpu_flags("Features\t: fp asimd\n") == frozenset()  # Arm: no x86 flags


def test_the_best_supported_instruction_set_is_chosen():
    assert loader.select_isa({"avx2", "fma", "avx512f"}).name == "avx2"
    assert loader.select_isa({"avx2"}) is None  # no FMA
    assert loader.select_isa({"sse2"}) is None
    for isa in loader.ISAS:
        assert (isa.include_dir / "vec.h").is_file()


def test_the_extension_name_changes_with_the_sources(tmp_path, monkeypatch):
    isa = loader.ISAS[0]
    name = loader.extension_name(isa)
    assert name.startswith(f"tformer_kernels_{isa.name}_") and name.isidentifier()
    copy = tmp_path / "cpu"
    shutil.copytree(loader.CPU_DIR, copy)
    monkeypatch.setattr(loader, "CPU_DIR", copy)
    assert loader.extension_name(isa) == name
    vec = copy / isa.name / "vec.h"
    vec.write_text(vec.read_text() + "\n// changed\n")
    assert loader.extension_name(isa) != name


def test_build_compiles_once_into_the_extensions_directory(tmp_path, monkeypatch, caplog):
    """The build is cached under $TORCH_EXTENSIONS_DIR and said on the log only when it compiles."""
    import torch.utils.cpp_extension

    calls = []

    def fake_load(name, sources, **kwargs):
        calls.append((name, sources, kwargs))
        Path(kwargs["build_directory"], f"{name}.so").touch()
        return name

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    isa = loader.ISAS[0]
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        assert loader.build(isa) == loader.extension_name(isa)
        assert loader.build(isa) == loader.extension_name(isa)
    assert sum("compiling" in r.getMessage() for r in caplog.records) == 1
    name, sources, kwargs = calls[0]
    assert Path(kwargs["build_directory"]) == tmp_path / "tformer" / name
    assert kwargs["verbose"] is False
    # compiled from a copy inside the build directory, so every install of these sources shares the build
    staged = tmp_path / "tformer" / name / "src"
    assert sources == [str(staged / s) for s in loader.SOURCES]
    assert kwargs["extra_include_paths"] == [str(staged), str(staged / isa.name)]
    for path in loader.source_files(isa):
        assert (staged / path.relative_to(loader.CPU_DIR)).read_bytes() == path.read_bytes()


def test_the_sources_ship_as_package_data():
    """Every file under cpu/ matches a package-data pattern of pyproject.toml (a wheel carries them)."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["tformer.kernels"]
    package = loader.CPU_DIR.parent
    files = [p for p in loader.CPU_DIR.rglob("*") if p.is_file()]
    assert {f.name for f in files} >= set(loader.SOURCES)
    for f in files:
        assert any(f.relative_to(package).match(p) for p in patterns), f
