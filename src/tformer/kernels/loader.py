"""Build and load the native CPU kernels (``cpu/*.cpp``) for the instruction set this CPU has.

The sources ship inside the package and are compiled on first use by ``torch.utils.cpp_extension.load``
(about a minute; said once on the log, at WARNING so that the wait is explained). The build is cached in
torch's extension directory (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) under a name
that carries a hash of the sources, the compiler flags, torch's and Python's versions, so a stale build is
never reused, builds of other versions of tformer never collide, and every install of the same sources
shares one build (compiled from a copy of the sources inside the build directory).

Dispatch by CPU features: each entry of ``ISAS`` names the CPU flags it needs, its compiler flags and a
directory of vector primitives (``cpu/<isa>/vec.h``) compiled with the shared kernels; ``select_isa``
takes the last (best) entry whose flags the CPU (``cpu_flags``) lists. Today there is one, AVX2 + FMA.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

CPU_DIR = Path(__file__).resolve().parent / "cpu"
#: the instruction-set independent sources, compiled once per instruction set
SOURCES = ("bindings.cpp", "linear.cpp", "attention.cpp", "decode_layer.cpp")
_COMMON_CFLAGS = ("-O3", "-fopenmp")  # -fopenmp without -lgomp: parallel_for uses the runtime torch loaded


@dataclass(frozen=True)
class Isa:
    """One instruction set the kernels are built for.

    Args:
        name: also the directory under ``cpu/`` holding its ``vec.h``.
        cpu_flags: the flags /proc/cpuinfo must list for the build to run here.
        cflags: the compiler flags that enable it.
    """

    name: str
    cpu_flags: frozenset[str]
    cflags: tuple[str, ...]

    @property
    def include_dir(self) -> Path:
        """The directory of this instruction set's vector primitives (vec.h)."""
        return CPU_DIR / self.name


#: from the most widely available to the fastest; select_isa takes the last one the CPU supports
ISAS: tuple[Isa, ...] = (Isa("avx2", frozenset({"avx2", "fma"}), ("-mavx2", "-mfma")),)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo's text (x86: the ``flags`` line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags ("avx2", "fma", "avx512f", "avx512_bf16", ...).

    Read from /proc/cpuinfo; where there is none (not Linux), derived from the vector width PyTorch
    itself dispatches to.
    """
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        capability = torch.backends.cpu.get_cpu_capability()
        return frozenset({"avx2", "fma"}) if capability in ("AVX2", "AVX512") else frozenset()


def select_isa(flags: Iterable[str] | None = None) -> Isa | None:
    """The best entry of ``ISAS`` that a CPU with these flags (default: this one) runs, or None."""
    have = cpu_flags() if flags is None else frozenset(flags)
    usable = [isa for isa in ISAS if isa.cpu_flags <= have]
    return usable[-1] if usable else None


def source_files(isa: Isa) -> list[Path]:
    """Every file a build for ``isa`` reads: the shared sources and headers, and its vec.h."""
    shared = sorted(p for p in CPU_DIR.iterdir() if p.suffix in (".cpp", ".h"))
    return shared + sorted(isa.include_dir.glob("*.h"))


def cflags(isa: Isa) -> list[str]:
    """The compiler flags of a build for ``isa``."""
    return [*_COMMON_CFLAGS, *isa.cflags]


def extension_name(isa: Isa) -> str:
    """``tformer_kernels_<isa>_<hash>``: the hash covers what the build depends on, so any change to
    the sources, the flags, torch or Python gives a new name (and a fresh build)."""
    digest = hashlib.sha256()
    for path in source_files(isa):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(" ".join(cflags(isa)).encode())
    digest.update(f"{torch.__version__} {sys.version_info[:2]} {sys.platform}".encode())
    return f"tformer_kernels_{isa.name}_{digest.hexdigest()[:16]}"


def build_directory(name: str) -> Path:
    """Where the extension ``name`` is built and cached (kept across runs)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / "tformer" / name


def _is_built(directory: Path, name: str) -> bool:
    return any((directory / f"{name}{suffix}").exists() for suffix in (".so", ".pyd"))


def _stage_sources(isa: Isa, directory: Path) -> tuple[list[str], list[str]]:
    """Copy the sources into the build directory, once (the directory's name is their hash), and return
    the paths to compile and to include from there.

    ninja's build file names the sources by path: built in place, every checkout or install of the same
    sources would rebuild over the others' cache.
    """
    staged = directory / "src"
    for path in source_files(isa):
        target = staged / path.relative_to(CPU_DIR)
        data = path.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            partial.write_bytes(data)
            os.replace(partial, target)  # atomic: a concurrent build sees the old file or the new one
    return [str(staged / s) for s in SOURCES], [str(staged), str(staged / isa.name)]


def build(isa: Isa) -> ModuleType:
    """Compile the kernels for ``isa`` (or reuse the cached build) and import them; raises where the
    build fails. Says once on the log when it compiles, as that takes about a minute."""
    from torch.utils.cpp_extension import load as build_and_load

    name = extension_name(isa)
    directory = build_directory(name)
    if not _is_built(directory, name):
        log.warning("compiling tformer's native %s kernels (once, about a minute) in %s", isa.name, directory)
    sources, include_dirs = _stage_sources(isa, directory)
    return build_and_load(
        name,
        sources=sources,
        extra_cflags=cflags(isa),
        extra_include_paths=include_dirs,
        build_directory=str(directory),
        verbose=False,
    )


@functools.cache
def load() -> ModuleType | None:
    """The compiled kernels for this CPU, or None where they cannot be built (no supported instruction
    set, no compiler): callers then keep the PyTorch path."""
    isa = select_isa()
    if isa is None:
        return None
    try:
        return build(isa)
    except Exception as e:  # no compiler, headers, ...: fall back to PyTorch
        log.warning("native kernels unavailable (%s); using PyTorch", str(e).splitlines()[0] if str(e) else e)
        return None
