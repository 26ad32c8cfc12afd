"""Loading benchmark: ``tformer.from_pretrained`` vs transformers' ``AutoModelForCausalLM.from_pretrained``.

    python benchmarks/bench_load.py [--small] [--repeats N] [--dir DIR] [--threads N]

Makes three Hugging Face directories with transformers (a ~0.5B-parameter Llama-shaped model saved in bf16,
GPT-2 small in fp32, and the Llama one saved in shards), then loads each one with both libraries, every load
in a fresh process, the two libraries interleaved (their order alternating between repeats). Each process
reports: its resident memory after the imports, the load time (and with the first forward pass of 32 tokens,
which reads whatever a memory map deferred), the peak resident memory after loading and after that forward
pass, and the bytes of the loaded weights. The tables give medians over the
repeats and tformer/transformers ratios from this run only. ``--small`` makes tiny models (a smoke test);
``--dir`` keeps the directories there (made once, reused on the next run).

Quantise-on-load is not measured: quantisation is not built yet (``from_pretrained(module_hook=...)`` is
where it will plug in).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from report import table  # noqa: E402

SIZES = {  # Llama-shaped: ~470M parameters full size; GPT-2 small is GPT2Config()'s defaults
    "full": {"llama": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24), "gpt2": {}},
    "small": {
        "llama": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2),
        "gpt2": dict(n_embd=128, n_layer=2, n_head=4),
    },
}
SHARD_SIZE = {"full": "200MB", "small": "4MB"}
LIBS = ("transformers", "tformer")
MiB = 2**20


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_checkpoints(root: Path, size: str) -> dict[str, Path]:
    """The three Hugging Face directories, made with transformers unless ``root`` already has them."""
    dirs = {"llama-bf16": root / f"llama-{size}", "gpt2-fp32": root / f"gpt2-{size}"}
    dirs["llama-bf16-sharded"] = root / f"llama-{size}-sharded"
    if all((d / "config.json").is_file() for d in dirs.values()):
        return dirs
    import torch
    import transformers

    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=32000,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        **SIZES[size]["llama"],
    )
    torch.set_default_dtype(torch.bfloat16)  # initialised in bf16: no fp32 copy while making it
    llama = transformers.LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    llama.save_pretrained(dirs["llama-bf16"])
    llama.save_pretrained(dirs["llama-bf16-sharded"], max_shard_size=SHARD_SIZE[size])
    del llama
    gc.collect()
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SIZES[size]["gpt2"])).eval()
    gpt2.save_pretrained(dirs["gpt2-fp32"])
    return dirs


# --- one measurement, in a fresh process ---------------------------------------------------------------
def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(lib: str, directory: str, threads: int | None) -> None:
    """Load ``directory`` with ``lib``, run one forward pass, print one JSON line of measurements."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if lib == "tformer":
        import tformer

        load = tformer.from_pretrained
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        load = transformers.AutoModelForCausalLM.from_pretrained
    gc.collect()
    imports = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from here
    start = time.perf_counter()
    model = load(directory)
    load_s = time.perf_counter() - start
    peak_load = _status("VmHWM")
    start = time.perf_counter()
    with torch.no_grad():
        model(torch.arange(32)[None] + 3)
    forward_s = time.perf_counter() - start  # includes reading what a memory map had not read yet
    peak_forward = _status("VmHWM")
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    result = {
        "imports": imports,
        "load_s": load_s,
        "load_forward_s": load_s + forward_s,
        "peak_load": peak_load,
        "peak_forward": peak_forward,
        "weights": sum(t.numel() * t.element_size() for t in tensors),
        "dtype": "/".join(dtypes),
    }
    print(json.dumps(result))


def measure(lib: str, directory: Path, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", lib, str(directory)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} on {directory} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the tables ----------------------------------------------------------------------------------------
def report(name: str, runs: dict[str, list[dict]]) -> None:
    med = {
        lib: {k: statistics.median(r[k] for r in runs[lib]) for k in runs[lib][0] if k != "dtype"}
        for lib in LIBS
    }
    hf, ours = med["transformers"], med["tformer"]

    def mib(x: float) -> str:
        return f"{x / MiB:,.0f} MiB"

    rows = [
        [
            "load time",
            f"{hf['load_s']:.2f} s",
            f"{ours['load_s']:.2f} s",
            f"{ours['load_s'] / hf['load_s']:.2f}",
        ],
        [
            "load + first forward pass",
            f"{hf['load_forward_s']:.2f} s",
            f"{ours['load_forward_s']:.2f} s",
            f"{ours['load_forward_s'] / hf['load_forward_s']:.2f}",
        ],
        [
            "resident after imports",
            mib(hf["imports"]),
            mib(ours["imports"]),
            f"{ours['imports'] / hf['imports']:.2f}",
        ],
    ]
    for key, label in (
        ("peak_load", "peak RSS after load"),
        ("peak_forward", "peak RSS after a forward pass"),
    ):
        rows.append([label, mib(hf[key]), mib(ours[key]), f"{ours[key] / hf[key]:.2f}"])
    rows.append(
        [
            "weights in memory",
            mib(hf["weights"]),
            mib(ours["weights"]),
            f"{ours['weights'] / hf['weights']:.2f}",
        ]
    )
    rows.append(["weights' dtype", runs["transformers"][0]["dtype"], runs["tformer"][0]["dtype"], ""])
    above = {lib: (m["peak_forward"] - m["imports"]) / m["weights"] for lib, m in med.items()}
    rows.append(
        [
            "(peak after forward - imports) / weights",
            f"{above['transformers']:.2f}",
            f"{above['tformer']:.2f}",
            f"{above['tformer'] / above['transformers']:.2f}",
        ]
    )
    table(f"{name} (median of {len(runs['tformer'])})", ["", "transformers", "tformer", "tformer / HF"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny models: a smoke test of the script")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dir", type=Path, default=None, help="keep the checkpoints here (default: a temp dir)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each load process")
    parser.add_argument("--child", nargs=2, metavar=("LIB", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads)
        return
    import torch
    import transformers

    import tformer

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, tformer {tformer.__version__}"
    )
    size = "small" if args.small else "full"
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        dirs = make_checkpoints(root, size)
        print(f"checkpoints in {root} ({time.perf_counter() - start:.0f} s to make)")
        for name, directory in dirs.items():
            runs: dict[str, list[dict]] = {lib: [] for lib in LIBS}
            for rep in range(args.repeats):
                for lib in LIBS if rep % 2 == 0 else LIBS[::-1]:  # interleaved, order alternating
                    runs[lib].append(measure(lib, directory, args.threads))
            report(name, runs)


if __name__ == "__main__":
    main()
