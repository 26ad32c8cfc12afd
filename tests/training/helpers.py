"""Tiny data files and configs shared by the training tests (generated here: no third-party text)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import tformer

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "under", "a", "mat", "log", "big", "small", "red", "blue"]

#: A one-layer 32-wide model and a small batch: a step takes milliseconds on one thread.
TINY = [
    "d_model=32",
    "n_heads=2",
    "d_ff=64",
    "n_layers=1",
    "max_seq_len=32",
    "block_size=32",
    "batch_size=8",
    "num_threads=1",
    "log_every=1",
    "warmup_steps=5",
    "lr=3e-3",
    "min_lr=3e-4",
    "eval_batches=2",
]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + "."


def write_text(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(sentence(rng) for _ in range(n)) + "\n", encoding="utf-8")
    return path


def write_pairs(path: Path, n: int = 200, seed: int = 0) -> Path:
    """(source, target = the source's words reversed), as TSV or JSONL by the file's suffix."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        rows.append((" ".join(words), " ".join(reversed(words))))
    if path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in rows), encoding="utf-8"
        )
    else:
        path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return path


def write_classify(path: Path, n: int = 200, seed: int = 0) -> Path:
    """CSV with a header: label ``pets`` when the text mentions a cat or a dog, else ``things``."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for _ in range(n):
        s = sentence(rng)
        lines.append(f"{s},{'pets' if ('cat' in s or 'dog' in s) else 'things'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(out: Path, split: str = "train") -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def losses(out: Path) -> dict[int, float]:
    """Training loss by step."""
    return {r["step"]: r["loss"] for r in rows(out)}


def tiny_seq2seq(tok, **changes):
    """A fresh 32-wide ``transformer-tiny`` over ``tok``'s vocabulary and special ids."""
    return tformer.build(
        "transformer-tiny",
        vocab_size=tok.vocab_size,
        d_model=32,
        n_heads=2,
        d_ff=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
        **changes,
    )
