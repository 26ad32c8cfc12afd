"""Decoding benchmark: tformer vs Hugging Face generate on a GPT-2-small-shaped model (124M, random weights).

    python benchmarks/bench_generate.py [--quick] [--repeats N] [--threads N] [--new-tokens N] [--no-native]
                                        [--only decode context batch prefill]

Both libraries run the same weights (the HF model is saved and loaded with ``tformer.from_pretrained``)
in the same process, interleaved, best of N. Tables:
  1. batch-1 greedy decoding, prompt 128, 128 new tokens, fp32 and bf16: decode tokens/s (prefill
     excluded) and end-to-end, tformer (PyTorch kernels, and with ``native_kernels``) vs HF, and the
     fraction of the memory-bandwidth roofline (each new token reads every weight once plus the KV cache;
     bandwidth measured between the rounds with a 256 MB reduction);
  2. per-token cost as the context grows, with and without the KV cache (plot: benchmarks/out/);
  3. throughput at batch sizes 1/4/16;  4. prefill tokens/s.
Every ratio is between runs of this invocation; under each table, the CPU and the bandwidth and matmul peaks
measured so far (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from machine import Machine  # noqa: E402
from report import table  # noqa: E402

import tformer  # noqa: E402
from tformer.generation.runners import DecoderRunner  # noqa: E402
from tformer.kernels import native_kernels  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PROMPT, NEW = 128, 128


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def build_models():
    import transformers

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    hf.generation_config.eos_token_id = None  # random weights: always generate all NEW tokens
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = tformer.from_pretrained(d)
    return hf, ours


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())


def kv_bytes_per_token(model, context: float) -> float:
    cfg = model.config
    return cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * context * model.dtype.itemsize


class Clock:
    """A streamer for both libraries: the time each new token arrives (HF first ``put``s the prompt)."""

    def __init__(self, skip_first_put: bool) -> None:
        self.skip, self.stamps = skip_first_put, []

    def put(self, value) -> None:
        if self.skip:
            self.skip = False
            return
        self.stamps.append(time.perf_counter())

    __call__ = put

    def end(self) -> None:
        pass


class Runner:
    """One library's generate: ``fn(ids, new_tokens, streamer)`` returns the output ids."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], is_hf: bool = False) -> None:
        self.name, self.fn, self.is_hf = name, fn, is_hf
        self.full = self.decode = float("inf")
        self.output: torch.Tensor | None = None

    def measure(self, ids: torch.Tensor, new: int) -> None:
        """Time a whole generate and, from token arrival times, its decode steps; keep the best so far."""
        clock = Clock(skip_first_put=self.is_hf)
        start = time.perf_counter()
        self.output = self.fn(ids, new, clock)
        self.full = min(self.full, time.perf_counter() - start)
        self.decode = min(self.decode, clock.stamps[-1] - clock.stamps[0])

    def decode_tps(self, new: int, batch: int = 1) -> float:
        """Generated tokens per second after the first one (the prefill excluded)."""
        return batch * (new - 1) / self.decode


def runners(hf, ours, native: bool) -> list[Runner]:
    def hf_fn(ids, new, streamer=None):
        mask = torch.ones_like(ids)
        return hf.generate(
            ids, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=0, streamer=streamer
        )

    def ours_fn(ids, new, streamer=None):
        return ours.generate(ids, max_new_tokens=new, eos_token_id=[], streamer=streamer)

    def native_fn(ids, new, streamer=None):
        with native_kernels(ours):
            return ours.generate(ids, max_new_tokens=new, eos_token_id=[], streamer=streamer)

    out = [Runner("HF transformers", hf_fn, is_hf=True), Runner("tformer", ours_fn)]
    if native:
        out.append(Runner("tformer + native_kernels", native_fn))
    return out


def measure_all(rs: list[Runner], ids: torch.Tensor, new: int, repeats: int, machine: Machine) -> list[float]:
    """Interleaved rounds, so that load changes on a shared machine hit every library alike, with the
    machine's peaks measured after each. Returns the read bandwidths of these rounds (GB/s; they drift by
    half on a shared machine)."""
    with torch.inference_mode():
        for _ in range(repeats):
            for r in rs:
                r.measure(ids, new)
            machine.measure()
    return machine.bandwidth[-repeats:]


def agreement(ours: torch.Tensor, reference: torch.Tensor) -> str:
    """'yes' if the generated tokens are equal, else how many leading tokens are (bf16 logits of random
    weights nearly tie often, and a different summation order can pick the other token)."""
    if torch.equal(ours, reference):
        return "yes"
    first = int((ours != reference).nonzero()[0, 0]) if ours.shape == reference.shape else 0
    return f"first {first} of {len(reference)}"


def decode_table(hf, ours, dtype: torch.dtype, repeats: int, native: bool, machine: Machine) -> None:
    """Decode tokens/s of each library; the roofline uses the best bandwidth measured between the rounds."""
    hf.to(dtype)
    ours.to(dtype)
    ids = torch.randint(0, 50257, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    bytes_per_token = weight_bytes(ours) + kv_bytes_per_token(ours, PROMPT + NEW / 2)
    rs = runners(hf, ours, native)
    bandwidths = measure_all(rs, ids, NEW, repeats, machine)
    bw = max(bandwidths)
    roofline = bw * 1e9 / bytes_per_token
    base = rs[0].decode_tps(NEW)
    rows = []
    for r in rs:
        decode = r.decode_tps(NEW)
        same = agreement(r.output[0, PROMPT:], rs[0].output[0, PROMPT:])
        rows.append(
            [
                r.name,
                f"{decode:.1f}",
                f"{NEW / r.full:.1f}",
                f"{decode / base:.2f}x",
                f"{100 * decode / roofline:.0f}%",
                same,
            ]
        )
    name = str(dtype).replace("torch.", "")
    table(
        f"Batch-1 greedy decoding, {name}: prompt {PROMPT}, {NEW} new tokens "
        f"(roofline {roofline:.0f} tok/s = {bw:.1f} GB/s / {bytes_per_token / 1e6:.0f} MB per token; bandwidth "
        f"between rounds {min(bandwidths):.1f}-{bw:.1f} GB/s)",
        ["library", "decode tok/s", "end-to-end tok/s", "vs HF", "of roofline", "tokens equal to HF's"],
        rows,
        machine.caption(),
    )


def context_growth(ours, contexts: list[int], repeats: int) -> list[tuple[int, float, float]]:
    """ms per new token at each context length, with the cache (one step) and without (a full forward)."""
    ours.to(torch.float32)
    steps = 4
    results = []
    with torch.inference_mode():
        for c in contexts:
            ids = torch.randint(0, 50257, (1, c), generator=torch.Generator().manual_seed(c))
            mask = torch.ones_like(ids)
            ours.setup_caches(1, c)
            runner = DecoderRunner(ours, mask, c)

            def cached(runner=runner, ids=ids, c=c):
                ours.reset_caches()
                runner.prefill(ids[:, : c - steps])
                start = time.perf_counter()
                for p in range(c - steps, c):
                    runner.step(ids[:, p : p + 1], p)
                return time.perf_counter() - start

            with_cache = min(cached() for _ in range(repeats)) / steps
            ours.clear_caches()
            full = DecoderRunner(ours, mask, c)
            without = best_time(lambda full=full, ids=ids: full.full(ids), max(1, repeats // 2))
            results.append((c, with_cache * 1e3, without * 1e3))
    return results


def growth_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log y against log x between the last two points (1 = linear, 2 = quadratic)."""
    import math

    return math.log(ys[-1] / ys[-2]) / math.log(xs[-1] / xs[-2])


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of y = intercept + slope * x."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def context_table(ours, contexts: list[int], repeats: int, machine: Machine) -> None:
    res = context_growth(ours, contexts, repeats)
    rows = []
    total_cached = total_full = 0.0
    prev = 0
    cumulative = []
    for c, cached, full in res:
        # generating tokens prev..c costs about (c - prev) steps at this context
        total_cached += (c - prev) * cached / 1e3
        total_full += (c - prev) * full / 1e3
        prev = c
        cumulative.append((total_cached, total_full))
        rows.append(
            [
                str(c),
                f"{cached:.1f}",
                f"{1e3 / cached:.1f}",
                f"{full:.1f}",
                f"{1e3 / full:.2f}",
                f"{full / cached:.0f}x",
                f"{total_cached:.1f}",
                f"{total_full:.1f}",
            ]
        )
    table(
        "Per-token cost as the context grows (fp32, batch 1): KV cache vs full recomputation",
        [
            "context",
            "cached ms/token",
            "cached tok/s",
            "uncached ms/token",
            "uncached tok/s",
            "speedup",
            "cum. s cached",
            "cum. s uncached",
        ],
        rows,
        machine.caption(),
    )
    xs = [c for c, _, _ in res]
    slope, base = linear_fit(xs, [r[1] for r in res])
    print(
        f"cached: about {base:.1f} ms + {slope * 1e3:.1f} us per context token (linear in the cache; the "
        f"fixed part is reading the weights); uncached per-token cost grows with exponent "
        f"{growth_exponent(xs, [r[2] for r in res]):.2f} and the time to generate n tokens with exponent "
        f"{growth_exponent(xs, [t[1] for t in cumulative]):.2f} (quadratic), vs "
        f"{growth_exponent(xs, [t[0] for t in cumulative]):.2f} cached"
    )
    plot(res, cumulative)


def plot(res, cumulative) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    xs = [c for c, _, _ in res]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(xs, [r[1] for r in res], "o-", label="KV cache")
    a.plot(xs, [r[2] for r in res], "s-", label="no cache (full forward)")
    a.set(
        xscale="log",
        yscale="log",
        xlabel="context (tokens)",
        ylabel="ms per new token",
        title="Per-token cost",
    )
    b.plot(xs, [t[0] for t in cumulative], "o-", label="KV cache")
    b.plot(xs, [t[1] for t in cumulative], "s-", label="no cache")
    b.set(xlabel="tokens generated", ylabel="seconds", title="Time to generate up to the context")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("tformer, GPT-2 small shape, fp32, batch 1")
    fig.tight_layout()
    path = OUT / "context_growth.png"
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def batch_table(hf, ours, batches: list[int], repeats: int, machine: Machine, new: int = 32) -> None:
    hf.to(torch.float32)
    ours.to(torch.float32)
    rows = []
    for b in batches:
        ids = torch.randint(0, 50257, (b, PROMPT), generator=torch.Generator().manual_seed(b))
        rs = runners(hf, ours, native=False)
        measure_all(rs, ids, new, repeats, machine)
        hf_tps, ours_tps = (r.decode_tps(new, b) for r in rs)
        rows.append([str(b), f"{ours_tps:.1f}", f"{hf_tps:.1f}", f"{ours_tps / hf_tps:.2f}x"])
    table(
        f"Decode throughput by batch size (fp32, prompt {PROMPT}, {new} new tokens, generated tokens/s)",
        ["batch", "tformer tok/s", "HF tok/s", "vs HF"],
        rows,
        machine.caption(),
    )


def prefill_table(hf, ours, repeats: int, lengths: list[int], native: bool, machine: Machine) -> None:
    rows = []
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            hf.to(dtype)
            ours.to(dtype)
            for n in lengths if dtype == torch.float32 else lengths[:1]:
                ids = torch.randint(0, 50257, (1, n), generator=torch.Generator().manual_seed(n))
                rs = runners(hf, ours, native)
                seconds = [best_time(lambda r=r, ids=ids: r.fn(ids, 1), repeats) for r in rs]
                name = str(dtype).replace("torch.", "")
                for r, sec in zip(rs, seconds):
                    rows.append([name, str(n), r.name, f"{n / sec:.0f}", f"{seconds[0] / sec:.2f}x"])
    table(
        "Prefill (prompt forward + first token, batch 1): prompt tokens/s",
        ["dtype", "prompt", "library", "tok/s", "vs HF"],
        rows,
        machine.caption(),
    )


def main() -> None:
    global NEW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, tokens and contexts (a few minutes)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-native", action="store_true", help="skip the native-kernel rows (no compiler)")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["decode", "context", "batch", "prefill"],
        default=["decode", "context", "batch", "prefill"],
        help="which tables to print (default: all)",
    )
    ap.add_argument(
        "--new-tokens", type=int, default=None, help=f"new tokens per decode run (default {NEW}; --quick: 32)"
    )
    args = ap.parse_args()
    NEW = args.new_tokens or (32 if args.quick else NEW)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    machine = Machine.detect()
    machine.measure()
    print(machine.header())
    native = not args.no_native
    if native:
        start = time.perf_counter()
        from tformer.kernels import load

        native = load() is not None
        print(f"native kernels: {'ready' if native else 'unavailable'} ({time.perf_counter() - start:.0f} s)")
    hf, ours = build_models()
    import transformers

    print(f"transformers {transformers.__version__}; model: {ours.num_parameters() / 1e6:.0f}M parameters")
    if "decode" in args.only:
        for dtype in (torch.float32, torch.bfloat16):
            decode_table(hf, ours, dtype, repeats, native, machine)
    if "context" in args.only:
        contexts = [64, 128, 256] if args.quick else [64, 128, 256, 512, 1024]
        context_table(ours, contexts, repeats, machine)
    if "batch" in args.only:
        batch_table(hf, ours, [1, 4] if args.quick else [1, 4, 16], max(1, repeats - 1), machine)
    if "prefill" in args.only:
        prefill_table(hf, ours, repeats, [PROMPT] if args.quick else [PROMPT, 512], native, machine)
    machine.measure()
    print(f"\nat the end: {machine.peaks_line()}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
