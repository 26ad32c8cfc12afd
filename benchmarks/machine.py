"""The machine a benchmark ran on, for every table to state: CPU model and vector extensions, threads, and the
memory-bandwidth and matmul peaks measured in the same run.

A shared machine's speed drifts while a benchmark runs, so the scripts call ``Machine.measure()`` between
their rounds and each table's caption gives the range measured so far; ratios to a machine limit use the
best of those samples.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: /proc/cpuinfo flag -> the name printed (x86; other architectures show none of them)
FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}


def cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The first processor's model name and flags from ``/proc/cpuinfo`` (``platform`` elsewhere)."""
    name, flags = "", set()
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not name:
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
            if name and flags:
                break
    return name or platform.processor() or platform.machine(), flags


def bandwidth_gbs(repeats: int = 3, megabytes: int = 256) -> float:
    """Best read bandwidth in GB/s of an fp32 sum over ``megabytes`` (what batch-1 decoding is bound by)."""
    x = torch.ones(megabytes * 1024 * 1024 // 4)
    x.sum()  # first touch
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def matmul_flops(dtype: torch.dtype, target_s: float = 0.2) -> float:
    """Best FLOP/s of a square matmul at the current thread count, as wide as fits ``target_s`` (at most
    2048): bf16 without native support falls back to a kernel hundreds of times slower than fp32."""

    def best(n: int, repeats: int) -> float:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return 2 * n**3 / min(times)

    rate, n = best(256, 3), 256
    while n < 2048 and 2 * (2 * n) ** 3 / rate < target_s:
        n *= 2
    return best(n, 5)


def _span(samples: list[float], scale: float) -> str:
    """``"lo-hi"`` of the samples divided by ``scale`` (one figure when they agree to a decimal)."""
    lo, hi = (f"{x / scale:.1f}" for x in (min(samples), max(samples)))
    return hi if lo == hi else f"{lo}-{hi}"


@dataclass
class Machine:
    """What a benchmark ran on; ``measure()`` adds one sample of each peak."""

    cpu: str
    flags: set[str]
    capability: str
    cores: int
    bandwidth: list[float] = field(default_factory=list)  # GB/s
    fp32: list[float] = field(default_factory=list)  # matmul FLOP/s
    bf16: list[float] = field(default_factory=list)

    @classmethod
    def detect(cls) -> Machine:
        """The CPU of this process; no peaks measured yet."""
        name, flags = cpuinfo()
        return cls(name, flags, torch.backends.cpu.get_cpu_capability(), os.cpu_count() or 1)

    def measure(self) -> None:
        """One sample of the read bandwidth and the fp32 and bf16 matmul peaks (about a second)."""
        self.bandwidth.append(bandwidth_gbs())
        self.fp32.append(matmul_flops(torch.float32))
        self.bf16.append(matmul_flops(torch.bfloat16))

    def peak(self, kind: str) -> float:
        """The best sample of ``kind`` ("bandwidth" in GB/s, "fp32" or "bf16" in FLOP/s)."""
        samples = getattr(self, kind)
        if not samples:
            raise RuntimeError("no peaks measured yet: call Machine.measure() first")
        return max(samples)

    def native_bf16(self) -> bool:
        """Whether bf16 matmuls outran fp32 here (else an MFU against the bf16 peak means nothing)."""
        return self.peak("bf16") > self.peak("fp32")

    def cpu_line(self) -> str:
        """Model, vector extensions (yes/no from /proc/cpuinfo, and torch's dispatch level) and threads."""
        ext = ", ".join(f"{label} {'yes' if flag in self.flags else 'no'}" for flag, label in FLAGS.items())
        threads = torch.get_num_threads()
        return (
            f"CPU: {self.cpu} ({ext}; torch dispatch {self.capability}), "
            f"{threads} torch thread{'s' if threads > 1 else ''} of {self.cores} cores"
        )

    def peaks_line(self) -> str:
        """The peaks measured so far, as ranges over the samples."""
        n = len(self.bandwidth)
        if not n:
            return "peaks: not measured"
        return (
            f"peaks this run ({n} sample{'s' if n > 1 else ''}): read {_span(self.bandwidth, 1.0)} GB/s, "
            f"matmul fp32 {_span(self.fp32, 1e9)} GFLOP/s, bf16 {_span(self.bf16, 1e9)} GFLOP/s"
        )

    def caption(self) -> str:
        """One line for under a table: the CPU and the peaks measured so far."""
        return f"{self.cpu_line()}; {self.peaks_line()}"

    def header(self) -> str:
        """The lines a script prints first: versions, CPU, peaks, load."""
        load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
        return (
            f"python {platform.python_version()}, torch {torch.__version__}{load}\n"
            f"{self.cpu_line()}\n{self.peaks_line()}"
        )
