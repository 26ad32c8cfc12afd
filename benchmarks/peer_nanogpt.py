"""nanoGPT's own ``train.py``, run as a subprocess beside tformer with the same recipe (for bench_train.py).

Nothing of nanoGPT lives here: ``--nanogpt DIR`` points at a checkout the user has. Its ``train.py`` reads
``data/shakespeare_char/{train,val}.bin`` and ``meta.pkl`` relative to the working directory, and its
``prepare.py`` downloads the text, so ``prepare()`` copies the checkout's scripts into a temporary
directory and writes those three files there, in ``prepare.py``'s format, from ids this benchmark already
has (one uint16 per character, characters in sorted order, the first 90% for training).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIG = "config/train_shakespeare_char.py"
NEEDED = ("train.py", "model.py", "configurator.py", CONFIG)
ITER = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
PARAMS = re.compile(r"^number of parameters: ([\d.]+)M")


def check_checkout(directory: Path) -> None:
    """Exit with a one-line message if ``directory`` is not a nanoGPT checkout."""
    missing = [name for name in NEEDED if not (directory / name).is_file()]
    if missing:
        sys.exit(f"--nanogpt {directory}: not a nanoGPT checkout (missing {', '.join(missing)})")


def prepare(checkout: Path, dest: Path, chars: list[str], train_ids: np.ndarray, val_ids: np.ndarray) -> None:
    """Copy nanoGPT's scripts from ``checkout`` to ``dest`` and write its shakespeare_char data files."""
    for name in NEEDED:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkout / name, dest / name)
    data = dest / "data" / "shakespeare_char"
    data.mkdir(parents=True)
    train_ids.astype(np.uint16).tofile(data / "train.bin")
    val_ids.astype(np.uint16).tofile(data / "val.bin")
    meta = {
        "vocab_size": len(chars),
        "itos": dict(enumerate(chars)),
        "stoi": {c: i for i, c in enumerate(chars)},
    }
    (data / "meta.pkl").write_bytes(pickle.dumps(meta))


def command(model: dict, recipe: dict, compile: bool) -> list[str]:
    """``train.py``'s command line for tformer's ``model`` and ``recipe`` dicts (its README CPU recipe when
    those are bench_train's defaults). Values keep their Python types: nanoGPT's configurator checks them."""
    overrides = {
        "device": "cpu",
        "compile": compile,
        "dtype": "float32",  # nanoGPT autocasts only on CUDA; say so rather than rely on its default
        "out_dir": "out",
        "n_layer": model["n_layers"],
        "n_head": model["n_heads"],
        "n_embd": model["d_model"],
        "block_size": recipe["block_size"],
        "bias": False,
        "dropout": float(model["dropout"]),
        "batch_size": recipe["batch_size"],
        "learning_rate": float(recipe["lr"]),
        "min_lr": float(recipe["min_lr"]),
        "warmup_iters": recipe["warmup_steps"],
        "max_iters": recipe["max_steps"],
        "lr_decay_iters": recipe["decay_steps"],
        "weight_decay": float(recipe["weight_decay"]),
        "beta1": float(recipe["betas"][0]),
        "beta2": float(recipe["betas"][1]),
        "grad_clip": float(recipe["clip_norm"]),
        "eval_interval": recipe["eval_every"],
        "eval_iters": recipe["eval_batches"],
        "log_interval": 1,
    }
    return [sys.executable, "train.py", CONFIG, *(f"--{k}={v}" for k, v in overrides.items())]


def run(workdir: Path, cmd: list[str], threads: int, batch: int, block: int, eval_every: int) -> dict:
    """Run ``cmd`` in ``workdir`` on ``threads`` threads and read its log.

    Returns the bench_train result fields: ``loop_s`` (the sum of its iteration times: evaluations and
    checkpoints included, interpreter start and imports not), ``step_s`` (the median iteration without an
    evaluation, from the sixth on), ``steps`` (it runs ``max_iters + 1`` iterations), ``val`` (its last val
    loss), ``process_s`` (the subprocess's wall time) and ``params_m`` (its count without position
    embeddings, in millions).
    """
    shutil.rmtree(workdir / "out", ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"nanoGPT's train.py failed (exit {proc.returncode}): {tail[0]}")
    iters, val, params = [], float("nan"), float("nan")
    for line in proc.stdout.splitlines():
        if m := ITER.match(line):
            iters.append((int(m[1]), float(m[3]) / 1e3))
        elif m := EVAL.match(line):
            val = float(m[3])
        elif m := PARAMS.match(line):
            params = float(m[1])
    if not iters:
        sys.exit("nanoGPT's train.py printed no 'iter N: loss L, time T ms' lines: is this its train.py?")
    plain = [dt for i, dt in iters if i % eval_every and i >= 5] or [dt for _, dt in iters]
    return {
        "loop_s": sum(dt for _, dt in iters),
        "step_s": statistics.median(plain),
        "steps": len(iters),
        "batch": batch,
        "tokens": len(iters) * batch * block,
        "val": val,
        "process_s": process_s,
        "params_m": params,
    }
