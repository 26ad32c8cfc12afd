"""Speculative and prompt lookup decoding on a draft/target pair trained here on tinyshakespeare.

    python benchmarks/bench_speculative.py [--data PATH] [--threads 2] [--rounds 3] [--quick]
                                           [--target-steps 500] [--draft-steps 1000]

One byte-level BPE tokenizer (2048 tokens) is trained on the text; then a GPT target (20M parameters:
6 layers, 512 wide) and a GPT draft (2.1M: 2 layers, 256 wide) are trained on it with ``Trainer`` (90/10
split, block 256). In the training stream half of the 96-token passages are followed by a blank line and
the passage again: a model trained on 2M tokens does not learn to copy from its context otherwise (large
pretrained models do), and the prompt lookup task below asks for exactly that. Everything is cached under benchmarks/out/speculative/ (``--quick``: .../speculative-quick/):
training writes a resumable checkpoint every 25 steps, so an interrupted run (Ctrl-C) continues where it
stopped, and a finished pair is loaded instead of trained. Then, on held-out prompts, in rounds that
interleave the runs (best round each; the machine's peaks are measured between rounds):
  1. greedy, batch 1: plain decoding vs a draft model with K = 2..8 drafted tokens (and the heuristic
     schedule): tok/s, speed-up, acceptance rate, and whether the tokens equal plain greedy's;
  2. the same sampled at temperature 0.8 (same seed for every run; outputs differ, distributions agree);
  3. prompt lookup on an input-grounded task: the prompt holds a passage, then its first words again, and
     the model continues (copying it), plain greedy vs prompt_lookup_num_tokens = 3, 5, 10;
  4. batch 4 (the four prompts at once): plain vs the best K of table 1 and the best N of table 3.
Targets (same-run ratios): >= 1.8x plain greedy at the best K; >= 1.5x for prompt lookup on the grounded
task; batch 4 keeps most (>= 75%) of its batch-1 speed-up. Hugging Face's assisted generation on the same
pair is not run: it needs tformer's Hugging Face export.

Estimated cost of a first full run on 2 cores (AVX2, nobody else busy): BPE training about a minute, target
training 1-2 h (500 steps of 16 x 256 tokens, 6 x 20M FLOPs per token), draft training about 20 min (1000
steps), the tables about 10 min; later runs only the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from machine import Machine  # noqa: E402
from report import table  # noqa: E402

import tformer  # noqa: E402
from tformer.tokenizers.bpe import ByteLevelBPETokenizer  # noqa: E402
from tformer.training.config import TrainConfig  # noqa: E402
from tformer.training.tasks import CLMTask  # noqa: E402
from tformer.training.trainer import CHECKPOINT, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT.parents[1] / "shared/data/tinyshakespeare.txt"  # ../shared beside the repository


@dataclass
class Setup:
    """Sizes of one benchmark run (the full one, or ``--quick``'s seconds-long smoke test)."""

    out: Path
    chars: int | None  # characters of the text used (None: all)
    vocab: int
    block: int
    target: dict
    draft: dict
    recipe: dict  # TrainConfig fields shared by both models
    prompts: int
    prompt_len: int
    new_tokens: int
    passage: int  # grounded task: passage tokens, then its first `echo` tokens again
    echo: int
    ks: tuple[int, ...]
    lookups: tuple[int, ...]


FULL = Setup(
    out=ROOT / "out" / "speculative",
    chars=None,
    vocab=2048,
    block=256,
    target=dict(d_model=512, n_layers=6, n_heads=8, d_ff=2048, dropout=0.2),
    draft=dict(d_model=256, n_layers=2, n_heads=4, d_ff=1024, dropout=0.1),
    recipe=dict(
        batch_size=16,
        lr=6e-4,
        min_lr=6e-5,
        warmup_steps=50,
        eval_every=100,
        eval_batches=10,
        checkpoint_every=25,
    ),
    prompts=4,
    prompt_len=64,
    new_tokens=128,
    passage=100,  # + a blank line + 12 + 128 new tokens fit the block of 256
    echo=12,
    ks=(2, 3, 4, 5, 6, 7, 8),
    lookups=(3, 5, 10),
)
QUICK = Setup(
    out=ROOT / "out" / "speculative-quick",
    chars=60_000,
    vocab=320,
    block=64,
    target=dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, dropout=0.0),
    draft=dict(d_model=32, n_layers=1, n_heads=2, d_ff=128, dropout=0.0),
    recipe=dict(
        batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=10, eval_batches=2, checkpoint_every=5
    ),
    prompts=2,
    prompt_len=16,
    new_tokens=16,
    passage=24,
    echo=4,
    ks=(2, 4),
    lookups=(3,),
)


# ---- the trained pair (cached) --------------------------------------------------------------------------
def tokenizer_and_ids(setup: Setup, text: str) -> tuple[ByteLevelBPETokenizer, np.ndarray]:
    """The BPE tokenizer trained on the text, and the text's ids (both cached)."""
    tok_dir, ids_path = setup.out / "tokenizer", setup.out / "ids.npy"
    if (tok_dir / "tformer_tokenizer.json").is_file() and ids_path.is_file():
        return tformer.load_tokenizer(tok_dir), np.load(ids_path)
    start = time.perf_counter()
    tok = ByteLevelBPETokenizer.train(text, vocab_size=setup.vocab)
    ids = np.asarray(tok.encode(text), dtype=np.uint16)
    tok_dir.mkdir(parents=True, exist_ok=True)
    tok.save(tok_dir)
    tmp = ids_path.with_suffix(".tmp.npy")
    np.save(tmp, ids)
    tmp.replace(ids_path)  # atomic: a half-written cache is never read
    print(
        f"BPE tokenizer ({tok.vocab_size} tokens) and {len(ids):,} ids in {time.perf_counter() - start:.0f} s"
    )
    return tok, ids


def with_repeats(ids: np.ndarray, sep: list[int], passage: int = 96, seed: int = 0) -> np.ndarray:
    """The token stream with every other passage (chosen at random) followed by ``sep`` and itself again.

    Example: passages [a, b, c] with b chosen -> a, b, sep, b, sep, c.
    """
    rng = np.random.default_rng(seed)
    pieces = []
    for start in range(0, len(ids), passage):
        chunk = ids[start : start + passage]
        pieces.append(chunk)
        if rng.random() < 0.5:
            pieces += [np.asarray(sep, dtype=ids.dtype), chunk, np.asarray(sep, dtype=ids.dtype)]
    return np.concatenate(pieces)


def trained(name: str, overrides: dict, steps: int, setup: Setup, tok, ids: np.ndarray, threads: int):
    """A model trained for ``steps`` (resumed from its checkpoint; loaded when already finished)."""
    out = setup.out / f"{name}-{steps}"
    done = out / "done.json"
    if done.is_file():
        model = tformer.from_pretrained(out)
        print(
            f"{name}: loaded ({model.num_parameters() / 1e6:.1f}M, val loss {json.loads(done.read_text())['val']:.3f})"
        )
        return model.eval()
    split = int(0.9 * len(ids))
    cfg = TrainConfig(
        block_size=setup.block,
        max_steps=steps,
        num_threads=threads,
        device="cpu",
        seed=1234,
        **setup.recipe,
    )
    torch.manual_seed(cfg.seed)
    model = tformer.build(
        "gpt-tiny", vocab_size=tok.vocab_size, max_seq_len=setup.block, attn_dropout=0.0, **overrides
    )
    train = with_repeats(ids[:split], tok.encode("\n\n"))  # validation: the plain held-out text
    task = CLMTask(
        train, ids[split:], cfg.block_size, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.eval_batches
    )
    trainer = Trainer(model, task, cfg, out, tokenizer=tok, log=print)
    if (out / CHECKPOINT).is_file():
        trainer.restore()  # continue an interrupted run
    print(f"{name}: training {model.num_parameters() / 1e6:.1f}M parameters for {steps} steps into {out}")
    metrics = trainer.fit() or trainer.evaluate()  # a run stopped after its last step: evaluate it here
    done.write_text(json.dumps({"val": metrics["loss"], "steps": steps}) + "\n")
    return trainer.model.eval()


# ---- the runs ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One way of generating, timed over the prompt set; ``best`` is its fastest round."""

    name: str
    k: str
    generate: Callable[[torch.Tensor], object]
    best: float = float("inf")
    output: object = None

    def time(self, batches: list[torch.Tensor]) -> None:
        outputs, start = [], time.perf_counter()
        for ids in batches:
            outputs.append(self.generate(ids))
        self.best = min(self.best, time.perf_counter() - start)
        self.output = outputs

    def sequences(self) -> torch.Tensor:
        return torch.cat([o.sequences for o in self.output])

    def acceptance(self) -> str:
        drafted = sum(int(o.num_drafted.sum()) for o in self.output if o.num_drafted is not None)
        accepted = sum(int(o.num_accepted.sum()) for o in self.output if o.num_accepted is not None)
        return f"{100 * accepted / drafted:.0f}% of {drafted}" if drafted else "-"


def make_runs(target, draft, setup: Setup, sampled: bool) -> list[Run]:
    common = dict(max_new_tokens=setup.new_tokens, eos_token_id=[], pad_token_id=0, return_dict=True)
    if sampled:
        common.update(do_sample=True, temperature=0.8, seed=0)

    def gen(**extra):
        return lambda ids: target.generate(ids, **common, **extra)

    runs = [Run("plain", "-", gen())]
    runs += [Run("draft model", str(k), gen(assistant_model=draft, num_assistant_tokens=k)) for k in setup.ks]
    runs.append(
        Run(
            "draft model, heuristic",
            "5+",
            gen(assistant_model=draft, num_assistant_tokens=5, num_assistant_tokens_schedule="heuristic"),
        )
    )
    return runs


def lookup_runs(target, setup: Setup) -> list[Run]:
    common = dict(max_new_tokens=setup.new_tokens, eos_token_id=[], pad_token_id=0, return_dict=True)
    runs = [Run("plain", "-", lambda ids: target.generate(ids, **common))]
    for n in setup.lookups:
        runs.append(
            Run(
                "prompt lookup",
                str(n),
                lambda ids, n=n: target.generate(ids, prompt_lookup_num_tokens=n, **common),
            )
        )
    return runs


def interleaved(runs: list[Run], batches: list[torch.Tensor], rounds: int, machine: Machine) -> None:
    """Every run once per round, the machine's peaks measured between rounds."""
    for r in range(rounds):
        for run in runs:
            run.time(batches)
        machine.measure()
        print(f"  round {r + 1}/{rounds} done", flush=True)


def new_tokens(batches: list[torch.Tensor], setup: Setup) -> int:
    return sum(b.shape[0] for b in batches) * setup.new_tokens


def print_table(title: str, runs: list[Run], batches, setup: Setup, machine: Machine, exact: bool) -> float:
    """The table of ``runs`` against the first (plain) one; returns the best speed-up."""
    plain, n = runs[0], new_tokens(batches, setup)
    rows, best = [], 0.0
    for run in runs:
        speedup = plain.best / run.best
        if run is not plain:
            best = max(best, speedup)
        same = torch.equal(run.sequences(), plain.sequences())
        rows.append(
            [run.name, run.k, f"{n / run.best:.1f}", f"{speedup:.2f}x", run.acceptance()]
            + (["yes" if same else "NO"] if exact else [])
        )
    header = ["decoding", "K / N", "tok/s", "vs plain", "accepted drafts"] + (
        ["== plain greedy"] if exact else []
    )
    table(title, header, rows, machine.caption())
    return best


def best_run(runs: list[Run]) -> Run:
    return min(runs[1:], key=lambda r: r.best)


# ---- prompts ------------------------------------------------------------------------------------------
def held_out_prompts(ids: np.ndarray, setup: Setup, count: int, length: int) -> list[torch.Tensor]:
    """``count`` windows of the validation split, spread evenly, each (1, length)."""
    val = ids[int(0.9 * len(ids)) :]
    starts = np.linspace(0, len(val) - length - 1, count).astype(int)
    return [torch.tensor(val[s : s + length].astype(np.int64))[None] for s in starts]


def grounded_prompts(tok, ids: np.ndarray, setup: Setup, count: int) -> list[torch.Tensor]:
    """A held-out passage, a blank line, then the passage's first words: the continuation is in the prompt."""
    sep = tok.encode("\n\n")
    out = []
    for passage in held_out_prompts(ids, setup, count, setup.passage):
        p = passage[0].tolist()
        out.append(torch.tensor(p + sep + p[: setup.echo])[None])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare.txt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target-steps", type=int, default=500)
    ap.add_argument("--draft-steps", type=int, default=1000)
    ap.add_argument(
        "--quick", action="store_true", help="tiny models and few steps: checks every path in seconds"
    )
    args = ap.parse_args()
    setup = QUICK if args.quick else FULL
    if args.quick:
        args.target_steps, args.draft_steps, args.rounds = (
            min(args.target_steps, 20),
            min(args.draft_steps, 20),
            1,
        )
    if not args.data.is_file():
        sys.exit(f"no text at {args.data}; pass --data PATH to tinyshakespeare.txt")
    torch.set_num_threads(args.threads)
    machine = Machine.detect()
    machine.measure()
    print(machine.header())

    text = args.data.read_text(encoding="utf-8")[: setup.chars]
    tok, ids = tokenizer_and_ids(setup, text)
    target = trained("target", setup.target, args.target_steps, setup, tok, ids, args.threads)
    draft = trained("draft", setup.draft, args.draft_steps, setup, tok, ids, args.threads)
    torch.set_num_threads(args.threads)
    pair = (
        f"target {target.num_parameters() / 1e6:.1f}M, draft {draft.num_parameters() / 1e6:.1f}M parameters"
    )

    prompts = held_out_prompts(ids, setup, setup.prompts, setup.prompt_len)
    grounded = grounded_prompts(tok, ids, setup, setup.prompts)
    with torch.inference_mode():
        greedy = make_runs(target, draft, setup, sampled=False)
        print("\ngreedy, batch 1")
        interleaved(greedy, prompts, args.rounds, machine)
        greedy_best = print_table(
            f"Greedy, batch 1 ({pair}; {setup.prompts} held-out prompts of {setup.prompt_len} tokens, "
            f"{setup.new_tokens} new tokens each)",
            greedy,
            prompts,
            setup,
            machine,
            exact=True,
        )
        sampled = make_runs(target, draft, setup, sampled=True)
        print("\nsampled at temperature 0.8, batch 1")
        interleaved(sampled, prompts, args.rounds, machine)
        print_table(
            "Sampled at temperature 0.8, batch 1 (same seed each run)",
            sampled,
            prompts,
            setup,
            machine,
            exact=False,
        )
        lookup = lookup_runs(target, setup)
        print("\nprompt lookup, batch 1")
        interleaved(lookup, grounded, args.rounds, machine)
        lookup_best = print_table(
            f"Prompt lookup, batch 1: continue a {setup.passage}-token held-out passage given in the prompt "
            f"(the prompt ends with its first {setup.echo} tokens again)",
            lookup,
            grounded,
            setup,
            machine,
            exact=True,
        )

        k, n = best_run(greedy), best_run(lookup)
        b4 = [torch.cat(prompts)]
        g4 = [torch.cat(grounded)]
        batch4 = [Run("plain", "-", greedy[0].generate), Run(k.name, k.k, k.generate)]
        lookup4 = [Run("plain", "-", lookup[0].generate), Run(n.name, n.k, n.generate)]
        print(f"\nbatch {setup.prompts}")
        interleaved(batch4, b4, args.rounds, machine)
        interleaved(lookup4, g4, args.rounds, machine)
        draft4 = print_table(
            f"Greedy, batch {setup.prompts} (the prompts of table 1 at once)",
            batch4,
            b4,
            setup,
            machine,
            exact=True,
        )
        lookup4_best = print_table(
            f"Prompt lookup, batch {setup.prompts} (the grounded prompts at once)",
            lookup4,
            g4,
            setup,
            machine,
            exact=True,
        )

    print("\nTargets (ratios from this run only):")
    print(f"  draft model, greedy, best K ({k.k}): {greedy_best:.2f}x plain (target >= 1.8x)")
    print(f"  prompt lookup, grounded task, best N ({n.k}): {lookup_best:.2f}x plain (target >= 1.5x)")
    print(
        f"  batch {setup.prompts} keeps {100 * draft4 / greedy_best:.0f}% (draft model) and {100 * lookup4_best / lookup_best:.0f}% "
        "(prompt lookup) of the batch-1 speed-up (target >= 75%)"
    )


if __name__ == "__main__":
    main()
