"""Attention kinds: what each costs against sequence length, and what it learns in equal wall time.

    python benchmarks/bench_attention.py [--only complexity|quality] [--lengths 512,1024,...] [--threads N]
    python benchmarks/bench_attention.py --smoke        # small sizes, seconds: checks the script runs

1. Complexity: one ``Attention`` layer (d_model 256, 4 heads, projections included, batch 1, bidirectional;
   ``--causal`` for causal) for exact attention with materialised scores (the reference backend), exact
   attention through SDPA (fused on CPU) and every efficient kind. Forward (no grad) and forward+backward
   wall time (median of repeats) and peak memory (the largest total of tensor storages alive at once during
   the call, tracked per operation) against T. Log-log slopes of time and memory over T >= 2048, the
   crossover length against SDPA, and at T = 16k the forward speed-up over SDPA and the memory against
   materialised scores. Targets: slope <= 1.15 for the efficient kinds; at 16k >= 5x faster than SDPA and
   <= 1/10 of the materialised memory. A PNG of both curves goes to ``--plot``.
2. Quality at equal wall time: each kind trains for ``--quality-seconds`` on (a) character-level language
   modelling of tinyshakespeare at ``--block`` (1024 by default; causal kinds) and (b) a synthetic long-range
   recall task (key-value pairs at the start, filler, a query key at the end: name its value; bidirectional,
   every kind). Held-out loss / accuracy and training tokens/s against exact attention.

Every ratio compares measurements of this run on this machine, whose CPU the script prints first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from report import table  # noqa: E402

import tformer  # noqa: E402
from tformer.nn import Attention  # noqa: E402
from tformer.nn.attention_kinds import make_attention_kind  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
LENGTHS = [512, 1024, 2048, 4096, 8192, 16384, 32768]
D_MODEL, HEADS = 256, 4


def variants(T: int) -> dict[str, tuple[str, dict, str]]:
    """Benchmark name -> (attention_kind, its parameters at length T, exact backend)."""
    return {
        "exact (materialised)": ("exact", {}, "reference"),
        "exact (SDPA)": ("exact", {}, "sdpa"),
        "local_global": ("local_global", {"window": 128}, "sdpa"),
        "block_sparse": ("block_sparse", {"block_size": 64}, "sdpa"),
        "performer": ("performer", {"nb_features": 256}, "sdpa"),
        "linformer": ("linformer", {"k": 256, "max_seq_len": T}, "sdpa"),
    }


def cpu_description() -> str:
    """CPU model, its AVX-family flags, and the threads torch uses."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags |= {f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma"))}
    except OSError:
        pass
    return (
        f"CPU: {model}; flags: {' '.join(sorted(flags)) or 'n/a'}; torch threads {torch.get_num_threads()} "
        f"of {os.cpu_count()} logical CPUs; torch {torch.__version__}"
    )


class PeakMemory(TorchDispatchMode):
    """The largest total of tensor storages created inside the ``with`` that are alive at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _freed(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._freed, key)
        return out


def make_layer(name: str, T: int) -> Attention:
    kind, params, impl = variants(T)[name]
    D = D_MODEL // HEADS
    module = make_attention_kind(kind, params, d_model=D_MODEL, n_heads=HEADS, n_kv_heads=HEADS, head_dim=D)
    layer = Attention(D_MODEL, HEADS, HEADS, D, kind=module)
    layer.impl = impl
    return layer


def call(layer: Attention, x: torch.Tensor, causal: bool, backward: bool) -> None:
    out, _ = layer(x, is_causal=causal)
    if backward:
        out.sum().backward()


def median_time(fn: Callable[[], None], budget_s: float, max_repeats: int = 7) -> float:
    """Median wall time of ``fn`` after one warm-up call, repeated while the budget lasts (at least 3 times)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, T: int, causal: bool, budget_s: float) -> dict[str, float]:
    torch.manual_seed(0)
    layer = make_layer(name, T)
    x = torch.randn(1, T, D_MODEL)
    result = {}
    with torch.no_grad():
        result["fwd_s"] = median_time(lambda: call(layer, x, causal, False), budget_s)
    result["fwdbwd_s"] = median_time(lambda: call(layer, x, causal, True), budget_s)
    for key, backward in (("fwd_mib", False), ("fwdbwd_mib", True)):
        layer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(backward), PeakMemory() as probe:
            call(layer, x, causal, backward)
        result[key] = probe.peak / 2**20
    return result


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (1: linear, 2: quadratic)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0]) if len(xs) > 1 else float("nan")


def run_complexity(lengths: list[int], causal: bool, max_gib: float, max_seconds: float, plot: Path) -> None:
    names = [n for n in variants(1) if not (causal and n == "linformer")]
    results: dict[str, dict[int, dict[str, float]]] = {n: {} for n in names}
    stopped: set[str] = set()
    for T in lengths:
        for name in names:
            scores_gib = 3 * HEADS * T * T * 4 / 2**30  # scores, probabilities and their gradient
            if name in stopped or (name == "exact (materialised)" and scores_gib > max_gib):
                continue
            r = measure(name, T, causal, budget_s=min(2.0, max_seconds))
            results[name][T] = r
            print(
                f"T={T:>6} {name:<22} fwd {r['fwd_s'] * 1e3:9.2f} ms  fwd+bwd {r['fwdbwd_s'] * 1e3:9.2f} ms  "
                f"peak {r['fwd_mib']:9.1f} / {r['fwdbwd_mib']:9.1f} MiB",
                flush=True,
            )
            if r["fwdbwd_s"] > max_seconds:
                stopped.add(name)
    rows = []
    for name in names:
        for T, r in results[name].items():
            rows.append(
                [name, str(T), f"{r['fwd_s'] * 1e3:.2f}", f"{r['fwdbwd_s'] * 1e3:.2f}", f"{r['fwd_mib']:.1f}",
                 f"{r['fwdbwd_mib']:.1f}"]
            )  # fmt: skip
    header = ["variant", "T", "fwd ms", "fwd+bwd ms", "peak fwd MiB", "peak fwd+bwd MiB"]
    table(
        f"Attention layer, d_model {D_MODEL}, {HEADS} heads, {'causal' if causal else 'bidirectional'}",
        header,
        rows,
    )
    summary(results, names)
    plot_curves(results, names, plot, causal)


def ratio_at(points, reference, key: str, invert: bool = False) -> str:
    """points / reference of ``key`` at T = 16k, or at the longest T both measured (named), this run."""
    shared = [T for T in points if T in reference]
    if not shared:
        return "not run"
    T = 16384 if 16384 in shared else max(shared)
    value = reference[T][key] / points[T][key] if invert else points[T][key] / reference[T][key]
    return f"{value:.3g}" + ("" if T == 16384 else f" @{T}")


def summary(results, names) -> None:
    sdpa, dense = results["exact (SDPA)"], results["exact (materialised)"]
    rows = []
    for name in names:
        points = results[name]
        fit = [T for T in points if T >= 2048] or list(points)
        rows.append(
            [
                name,
                f"{loglog_slope(fit, [points[T]['fwd_s'] for T in fit]):.2f}",
                f"{loglog_slope(fit, [points[T]['fwdbwd_s'] for T in fit]):.2f}",
                f"{loglog_slope(fit, [max(points[T]['fwd_mib'], 1e-3) for T in fit]):.2f}",
                f"{loglog_slope(fit, [max(points[T]['fwdbwd_mib'], 1e-3) for T in fit]):.2f}",
                "-" if name.startswith("exact") else str(crossover(points, sdpa) or "never"),
                ratio_at(points, sdpa, "fwd_s", invert=True),
                ratio_at(points, dense, "fwd_mib"),
            ]
        )
    header = ["variant", "slope fwd time", "slope fwd+bwd time", "slope fwd mem", "slope fwd+bwd mem",
              "faster than SDPA from T", "fwd speed-up vs SDPA @16k", "fwd mem / materialised @16k"]  # fmt: skip
    table(
        "Log-log slopes over T >= 2048 (all T if fewer); targets: slopes <= 1.15, >= 5x, <= 0.1 "
        "(@T: the longest length both ran)",
        header,
        rows,
    )


def crossover(points: dict[int, dict[str, float]], sdpa: dict[int, dict[str, float]]) -> int | None:
    """The shortest measured T from which a kind's forward pass is faster than SDPA's at every longer T."""
    shared = sorted(T for T in points if T in sdpa)
    faster = [points[T]["fwd_s"] < sdpa[T]["fwd_s"] for T in shared]
    for i, T in enumerate(shared):
        if all(faster[i:]):
            return T
    return None


def plot_curves(results, names, path: Path, causal: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for name in names:
        Ts = sorted(results[name])
        for ax, key in zip(axes, ("fwd_s", "fwdbwd_s", "fwdbwd_mib")):
            ax.loglog(Ts, [results[name][T][key] for T in Ts], marker="o", label=name)
    for ax, title in zip(
        axes, ("forward time (s)", "forward+backward time (s)", "forward+backward peak (MiB)")
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length T")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Attention kinds, d_model {D_MODEL}, {HEADS} heads, {'causal' if causal else 'bidirectional'}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


# ---- quality at equal wall time ---------------------------------------------------------------------------
QUALITY_KINDS = {
    "exact": {},
    "local_global": {"window": 128},
    "block_sparse": {"block_size": 64},
    "performer": {"nb_features": 128},
    "linformer": {"k": 128},
}


def train_for(model, batch_fn, loss_fn, seconds: float, lr: float = 1e-3) -> tuple[int, float, int]:
    """Train until ``seconds`` of wall time have passed; returns (steps, tokens/s, tokens)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    steps = tokens = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = batch_fn()
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps, tokens = steps + 1, tokens + batch[0].numel()
    return steps, tokens / (time.perf_counter() - start), tokens


def char_lm(data: Path, block: int, seconds: float, batch: int) -> None:
    text = data.read_text()
    chars = sorted(set(text))
    ids = torch.tensor(_encode(text, chars))
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    g = torch.Generator().manual_seed(0)

    def batch_fn(source=train_ids, gen=g):
        start = torch.randint(0, len(source) - block - 1, (batch,), generator=gen)
        rows = torch.stack([source[s : s + block + 1] for s in start.tolist()])
        return rows[:, :-1], rows[:, 1:]

    def loss_fn(model, b):
        logits = model(b[0]).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[1].reshape(-1))

    val_gen = torch.Generator().manual_seed(1)
    val_batches = [batch_fn(val_ids, val_gen) for _ in range(8)]
    rows, base = [], None
    for kind, params in QUALITY_KINDS.items():
        if kind == "linformer":
            rows.append([kind, "n/a (bidirectional only)", "", "", ""])
            continue
        torch.manual_seed(0)
        model = tformer.build(
            "gpt-tiny", vocab_size=len(chars), d_model=128, n_layers=4, n_heads=4, d_ff=512, max_seq_len=block,
            attention_kind=kind, attention_params=params,
        )  # fmt: skip
        steps, tps, _ = train_for(model, batch_fn, loss_fn, seconds)
        model.eval()
        with torch.no_grad():
            val = sum(loss_fn(model, b).item() for b in val_batches) / len(val_batches)
        base = base or tps
        rows.append([kind, str(steps), f"{tps:,.0f}", f"{tps / base:.2f}", f"{val:.3f}"])
    table(
        f"Char-level tinyshakespeare, block {block}, batch {batch}, {seconds:g} s of training each",
        ["kind", "steps", "train tokens/s", "vs exact", "held-out loss"],
        rows,
    )


def _encode(text: str, chars: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(chars)}
    return [index[c] for c in text]


N_PAIRS, N_KEYS, N_VALUES, N_FILLER = 8, 32, 32, 8
MASK, FILLER0, KEY0 = 0, 1, 1 + N_FILLER
VALUE0 = KEY0 + N_KEYS
RECALL_VOCAB = VALUE0 + N_VALUES


def recall_batch(batch: int, T: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows: k1 v1 ... k8 v8, filler, a query key, MASK; the target is the query key's value."""
    ids = torch.randint(FILLER0, FILLER0 + N_FILLER, (batch, T), generator=g)
    keys = torch.stack([torch.randperm(N_KEYS, generator=g)[:N_PAIRS] for _ in range(batch)]) + KEY0
    values = torch.randint(VALUE0, VALUE0 + N_VALUES, (batch, N_PAIRS), generator=g)
    ids[:, 0 : 2 * N_PAIRS : 2], ids[:, 1 : 2 * N_PAIRS : 2] = keys, values
    pick = torch.randint(0, N_PAIRS, (batch,), generator=g)
    ids[:, -2], ids[:, -1] = keys[torch.arange(batch), pick], MASK
    return ids, values[torch.arange(batch), pick]


def recall(T: int, seconds: float, batch: int) -> None:
    glob = torch.zeros(batch, T, dtype=torch.long)
    glob[:, -2:] = 1  # local_global: the query tokens are global (Longformer's recipe for QA)

    def logits_of(model, ids):
        g = glob[: ids.shape[0]] if model.config.attention_kind == "local_global" else None
        return model(ids, global_attention_mask=g).logits[:, -1]

    def loss_fn(model, b):
        return torch.nn.functional.cross_entropy(logits_of(model, b[0]), b[1])

    g = torch.Generator().manual_seed(0)
    test = recall_batch(256, T, torch.Generator().manual_seed(1))
    rows, base = [], None
    for kind, params in QUALITY_KINDS.items():
        params = {**params, "max_seq_len": T} if kind == "linformer" else params
        torch.manual_seed(0)
        model = tformer.build(
            "bert-tiny", vocab_size=RECALL_VOCAB, d_model=128, n_layers=3, n_heads=4, d_ff=512, max_seq_len=T,
            norm_placement="pre", final_norm=True, attention_kind=kind, attention_params=params,
        )  # fmt: skip
        steps, tps, _ = train_for(model, lambda gen=g: recall_batch(batch, T, gen), loss_fn, seconds)
        model.eval()
        with torch.no_grad():
            accuracy = (
                sum(
                    (logits_of(model, test[0][i : i + batch]).argmax(-1) == test[1][i : i + batch])
                    .sum()
                    .item()
                    for i in range(0, 256, batch)
                )
                / 256
            )
        base = base or tps
        rows.append([kind, str(steps), f"{tps:,.0f}", f"{tps / base:.2f}", f"{accuracy:.3f}"])
    table(
        f"Long-range recall, T={T}, {N_PAIRS} pairs at the start, {seconds:g} s of training each "
        f"(chance {1 / N_VALUES:.3f})",
        ["kind", "steps", "train tokens/s", "vs exact", "held-out accuracy"],
        rows,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["complexity", "quality"])
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    p.add_argument("--causal", action="store_true", help="causal attention in the complexity part")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-gib", type=float, default=8.0, help="skip materialised scores above this (GiB)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="stop a variant after a slower call")
    p.add_argument("--plot", type=Path, default=Path(__file__).resolve().parent / "out/attention_kinds.png")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--recall-len", type=int, default=1024)
    p.add_argument("--quality-seconds", type=float, default=120.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="tiny sizes to check the script runs (seconds)")
    args = p.parse_args()
    if args.smoke:
        args.lengths, args.block, args.recall_len, args.quality_seconds, args.batch = (
            "128,256",
            128,
            64,
            2.0,
            4,
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    print(cpu_description())
    if args.only in (None, "complexity"):
        lengths = [int(t) for t in args.lengths.split(",")]
        run_complexity(lengths, args.causal, args.max_gib, args.max_seconds, args.plot)
    if args.only in (None, "quality"):
        if args.data.is_file():
            char_lm(args.data, args.block, args.quality_seconds, args.batch)
        else:
            print(f"\n{args.data} not found: char-level task skipped (--data PATH)")
        recall(args.recall_len, args.quality_seconds, args.batch)


if __name__ == "__main__":
    main()
