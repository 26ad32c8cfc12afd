"""Training benchmark: tformer on char-level tinyshakespeare beside nanoGPT's CPU recipe, all measured here.

    python benchmarks/bench_train.py [--nanogpt DIR] [--rounds 2] [--threads 2] [--only identical|target]
                                     [--quick] [--compile] [--bf16] [--json PATH]

The recipe is nanoGPT's README CPU recipe for shakespeare_char: 4 layers, 4 heads, 128 wide, block 64,
batch 12, lr 1e-3 cosine to 1e-4 over 2000 iterations, warmup 100, dropout 0, no biases, 20 evaluation
batches every 250 iterations. Each round runs, one after the other on this machine:

1. identical recipe: that model (same parameter count) and schedule through ``Trainer.fit`` (metrics,
   checkpoints and plots included);
2. nanoGPT: its own ``train.py`` with the same recipe in a subprocess, when ``--nanogpt DIR`` points at a
   nanoGPT checkout (see peer_nanogpt.py);
3. control: a nanoGPT-style eager loop on a plain GPT of the same shape, written out below (training steps
   only), so that a run without a nanoGPT checkout still has a same-run peer;
4. time to target: a same-size model, any recipe, until its val loss is at most the reference's (nanoGPT's
   final val loss when it ran, else the identical recipe's), evaluation time included;

then the machine's bandwidth and matmul peaks are measured again. Every figure and ratio printed comes from
this invocation (best of the rounds). Targets: (1) the identical recipe at least 1.3x nanoGPT's training
tokens/s; (2) the target reached in at most 60% of the reference run's loop time.

MFU uses 6 * N + 12 * L * T * d FLOPs per token (N: parameters without position embeddings), against the
best fp32 and bf16 matmul peaks measured in this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import peer_nanogpt  # noqa: E402
from machine import Machine  # noqa: E402
from report import table  # noqa: E402

import tformer  # noqa: E402
from tformer.tokenizers import CharTokenizer  # noqa: E402
from tformer.training.config import TrainConfig  # noqa: E402
from tformer.training.tasks import CLMTask  # noqa: E402
from tformer.training.trainer import Trainer  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
BLOCK = 64

#: nanoGPT's shakespeare_char model at the CPU size: pre-LN GPT, LayerNorm and Linear without bias, exact GELU,
#: learned positions, tied embeddings.
MODEL = dict(
    d_model=128,
    n_layers=4,
    n_heads=4,
    d_ff=512,
    max_seq_len=BLOCK,
    activation="gelu",
    dropout=0.0,
    attn_dropout=0.0,
    attn_bias=False,
    attn_out_bias=False,
    ffn_bias=False,
    norm_bias=False,
)
IDENTICAL = dict(
    block_size=BLOCK,
    batch_size=12,
    lr=1e-3,
    min_lr=1e-4,
    warmup_steps=100,
    max_steps=2000,
    decay_steps=2000,
    weight_decay=0.1,
    betas=(0.9, 0.99),
    clip_norm=1.0,
    eval_every=250,
    eval_batches=20,
    log_every=10,
)
#: time to target: the same parameter count (-0.4%) as 2 wider layers (fewer, larger matmuls, and a lower
#: loss per token at this budget than 4 narrow ones), 3x the rate, batch 16 and an 800-step schedule;
#: evaluation only where the target can be reached (every 25 steps from step 625).
TARGET_MODEL = {**MODEL, "n_layers": 2, "d_model": 180, "d_ff": 720}
TARGET = dict(
    block_size=BLOCK,
    batch_size=16,
    lr=3e-3,
    min_lr=3e-4,
    warmup_steps=50,
    max_steps=800,
    decay_steps=800,
    weight_decay=0.1,
    betas=(0.9, 0.99),
    clip_norm=1.0,
    eval_every=25,
    eval_batches=20,
)
TARGET_EVAL_FROM = 625
#: --quick: every path once, in seconds (the numbers mean little)
QUICK_IDENTICAL = {**IDENTICAL, "max_steps": 120, "decay_steps": 120, "warmup_steps": 20, "eval_every": 60}
QUICK_TARGET = {**TARGET, "max_steps": 100, "decay_steps": 100, "warmup_steps": 20}
QUICK_TARGET_EVAL_FROM = 50
#: the runs, as the table names them
IDENTICAL_RUN, NANOGPT = "tformer, identical recipe", "nanoGPT train.py, identical recipe"
CONTROL, TARGET_RUN = "control: nanoGPT-style loop", "tformer, time to target"


def flops_per_token(model: torch.nn.Module, block: int) -> float:
    """Training FLOPs per token: 6 per weight (position embeddings are lookups) plus attention."""
    cfg = model.config
    n = model.num_parameters() - cfg.max_seq_len * cfg.d_model
    return 6 * n + 12 * cfg.n_layers * block * cfg.d_model


def split_tokens(path: Path) -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    """Character ids of the text (65 characters in sorted order, as nanoGPT's prepare.py) split 90/10."""
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    ids = np.asarray(tok.encode(text), dtype=np.uint16)
    n = int(0.9 * len(ids))
    return tok, ids[:n], ids[n:]


def make_trainer(
    tok, train_ids, val_ids, recipe: dict, out: Path, threads: int, model: dict = MODEL, **extra
) -> Trainer:
    cfg = TrainConfig(seed=1337, num_threads=threads, **recipe, **extra)
    torch.manual_seed(cfg.seed)
    model = tformer.build("gpt-tiny", vocab_size=tok.vocab_size, **model)
    task = CLMTask(
        train_ids, val_ids, cfg.block_size, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.eval_batches
    )
    return Trainer(model, task, cfg, out, tokenizer=tok, progress=False, log=lambda m: None)


def run_identical(tok, train_ids, val_ids, recipe: dict, threads: int, **extra) -> dict:
    """nanoGPT's recipe through the full ``Trainer.fit`` loop; the step time is the median of the training
    steps the trainer logged (evaluation and checkpoints happen outside them)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tok, train_ids, val_ids, recipe, Path(tmp), threads, **extra)
        start = time.perf_counter()
        metrics = trainer.fit()
        loop = time.perf_counter() - start
        logged = [r["tokens_per_s"] for r in trainer.metrics.rows() if r.get("split") == "train"]
    cfg = trainer.cfg
    return {
        "loop_s": loop,
        "step_s": statistics.median(cfg.batch_size * BLOCK / t for t in logged),
        "steps": cfg.max_steps,
        "batch": cfg.batch_size,
        "tokens": cfg.max_steps * cfg.batch_size * BLOCK,
        "val": metrics["loss"],
        "model": trainer.model,
    }


def run_to_target(
    tok, train_ids, val_ids, recipe: dict, eval_from: int, goal: float, threads: int, **extra
) -> dict:
    """Train with ``recipe`` and stop at the first evaluation at or below ``goal``."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tok, train_ids, val_ids, recipe, Path(tmp), threads, TARGET_MODEL, **extra)
        torch.set_num_threads(threads)
        cfg, val, step, reached, steps = trainer.cfg, float("nan"), 0, None, []
        start = time.perf_counter()
        while step < cfg.max_steps:
            step += 1
            t = time.perf_counter()
            trainer.train_step(step)
            steps.append(time.perf_counter() - t)
            if (step >= eval_from and step % cfg.eval_every == 0) or step == cfg.max_steps:
                val = trainer.evaluate()["loss"]
                if val <= goal:
                    reached = time.perf_counter() - start
                    break
        loop = time.perf_counter() - start
    return {
        "loop_s": loop,
        "step_s": statistics.median(steps[5:] or steps),
        "steps": step,
        "batch": cfg.batch_size,
        "tokens": step * cfg.batch_size * BLOCK,
        "val": val,
        "model": trainer.model,
        "reached": reached,
    }


class _Block(torch.nn.Module):
    """A plain pre-LN GPT block (no biases), written out for the control loop."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        nn = torch.nn
        self.h, self.ln1, self.ln2 = h, nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (
            t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in self.qkv(self.ln1(x)).split(D, 2)
        )
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, h, T, hs) -> (B, T, D)
        return x + self.down(torch.nn.functional.gelu(self.up(self.ln2(x))))


def run_control(train_ids: np.ndarray, vocab: int, steps: int, batch: int, threads: int) -> dict:
    """A nanoGPT-style eager loop on a plain GPT of the same shape: per-row batch stacking, foreach AdamW
    (nanoGPT fuses only on CUDA), a loss.item() per step; no evaluation."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d, layers, heads = MODEL["d_model"], MODEL["n_layers"], MODEL["n_heads"]
    nn = torch.nn
    tok, pos = nn.Embedding(vocab, d), nn.Embedding(BLOCK, d)
    blocks, ln_f = nn.ModuleList(_Block(d, heads) for _ in range(layers)), nn.LayerNorm(d, bias=False)
    params = [*tok.parameters(), *pos.parameters(), *blocks.parameters(), *ln_f.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    data = torch.from_numpy(train_ids.astype(np.int64))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        ix = torch.randint(len(data) - BLOCK - 1, (batch,))
        x = torch.stack([data[i : i + BLOCK + 1] for i in ix])
        h = tok(x[:, :-1]) + pos(torch.arange(BLOCK))
        for block in blocks:
            h = block(h)
        logits = ln_f(h) @ tok.weight.T  # tied output projection
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t)
    return {
        "loop_s": sum(times),
        "step_s": statistics.median(times[5:] or times),
        "steps": steps,
        "batch": batch,
        "tokens": steps * batch * BLOCK,
        "val": float("nan"),
    }


def best(runs: list[dict]) -> dict:
    """The round with the shortest loop, and the slowest loop of all rounds as ``worst_s``."""
    return {**min(runs, key=lambda r: r["loop_s"]), "worst_s": max(r["loop_s"] for r in runs)}


def row(name: str, r: dict, params: float, fpt: float, peers: dict[str, dict], machine: Machine) -> list[str]:
    """One table row; ``peers`` maps a column name to the run its training tokens/s is divided by."""
    tok_s = r["batch"] * BLOCK / r["step_s"]
    ratios = [f"{tok_s * p['step_s'] / (p['batch'] * BLOCK):.2f}x" if p else "-" for p in peers.values()]
    # against a bf16 peak below the fp32 one (no native bf16 arithmetic) an fp32 run's MFU is meaningless
    mfu = [f"{100 * tok_s * fpt / machine.peak(k):.1f}%" for k in ("fp32", "bf16")]
    loop = f"{r['loop_s']:.1f}" + (f" ({r['worst_s']:.1f})" if r["worst_s"] > r["loop_s"] else "")
    val = "-" if r["val"] != r["val"] else f"{r['val']:.3f}"
    return [
        name,
        f"{params / 1e6:.3f}M",
        f"{r['steps']} x {r['batch']}",
        f"{1e3 * r['step_s']:.1f}",
        f"{tok_s:,.0f}",
        *ratios,
        loop,
        f"{r['tokens'] / r['loop_s']:,.0f}",
        val,
        mfu[0],
        mfu[1] if machine.native_bf16() else "-",
    ]


def print_results(results: dict[str, dict], shapes: dict[str, tuple[float, float]], machine: Machine) -> None:
    """The table of every run (best round each), with ratios to the peers measured in the same run."""
    peers = {
        "vs nanoGPT": results.get(NANOGPT),
        "vs control": results.get(CONTROL),
    }
    rows = [row(name, r, *shapes[r["shape"]], peers, machine) for name, r in results.items()]
    header = ["run", "params (no pos.)", "steps x batch", "step ms", "train tok/s", *peers]
    header += ["loop s best (worst)", "loop tok/s", "val loss", "MFU fp32", "MFU bf16"]
    table(
        "Training on char-level tinyshakespeare (step ms: median training step, evaluation excluded; loop: "
        "the whole training loop, evaluation and checkpoints included)",
        header,
        rows,
        machine.caption(),
    )


def print_verdicts(results: dict[str, dict], goal: float | None, goal_given: bool) -> None:
    """The two targets, judged only against runs of this invocation (``goal_given``: from --target-loss)."""
    ours, peer, control = results.get(IDENTICAL_RUN), results.get(NANOGPT), results.get(CONTROL)
    if ours and peer:
        speed, loop = peer["step_s"] / ours["step_s"], peer["loop_s"] / ours["loop_s"]
        print(
            f"\n(1) identical recipe: {speed:.2f}x nanoGPT's training tokens/s ({loop:.2f}x its loop speed, "
            f"evaluation included), side by side (target >= 1.30x): {'met' if speed >= 1.3 else 'NOT met'}"
        )
        print(
            f"    nanoGPT's process took {peer['process_s']:.1f} s (interpreter start and imports included)"
        )
    elif ours:
        vs = f"; {control['step_s'] / ours['step_s']:.2f}x the control loop's tokens/s" if control else ""
        print(f"\n(1) identical recipe: not judged, nanoGPT did not run (pass --nanogpt DIR){vs}")
    reached = results.get(TARGET_RUN)
    if reached:
        reference = peer or ours
        ref_name = "nanoGPT's" if peer else "the identical recipe's"
        source = "--target-loss" if goal_given else f"{ref_name} final val loss"
        when = reached["reached"]
        if reference is None or when is None:
            text = f"{when:.1f} s" if when is not None else "not reached"
            print(f"(2) time to val loss <= {goal:.3f} ({source}): {text}")
        else:
            share = when / reference["loop_s"]
            print(
                f"(2) time to val loss <= {goal:.3f} ({source}): {when:.1f} s = {share:.0%} of "
                f"{ref_name} loop time (target <= 60%): {'met' if share <= 0.6 else 'NOT met'}"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["identical", "target"], default=None)
    parser.add_argument("--nanogpt", type=Path, default=None, help="a nanoGPT checkout to run side by side")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every run (default 2; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="120 steps, 1 round: a smoke run, not a measure")
    parser.add_argument(
        "--target-loss", type=float, default=None, help="time-to-target goal (default: the reference's val)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time counted)"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument(
        "--control-steps",
        type=int,
        default=None,
        help="steps of the nanoGPT-style control loop per round (default 300; --quick 50; 0: skip)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no data file at {args.data}; pass --data PATH")
    if args.only == "target" and args.nanogpt is None and args.target_loss is None:
        sys.exit("--only target needs a reference val loss: add --nanogpt DIR or --target-loss X")
    if args.nanogpt is not None:
        peer_nanogpt.check_checkout(args.nanogpt)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    machine = Machine.detect()
    machine.measure()
    print(machine.header())
    identical = QUICK_IDENTICAL if args.quick else IDENTICAL
    target, eval_from = (QUICK_TARGET, QUICK_TARGET_EVAL_FROM) if args.quick else (TARGET, TARGET_EVAL_FROM)
    rounds = args.rounds or (1 if args.quick else 2)
    control_steps = args.control_steps if args.control_steps is not None else (50 if args.quick else 300)
    tok, train_ids, val_ids = split_tokens(args.data)
    shapes = {}
    for shape, model in (("same", MODEL), ("target", TARGET_MODEL)):
        built = tformer.build("gpt-tiny", vocab_size=tok.vocab_size, **model)
        shapes[shape] = (built.num_parameters() - BLOCK * model["d_model"], flops_per_token(built, BLOCK))
    extra = {"compile": args.compile, "precision": "bf16" if args.bf16 else "fp32"}
    if args.nanogpt and args.bf16:
        print("note: nanoGPT's train.py autocasts only on CUDA: it runs fp32 here while tformer runs bf16")
    runs: dict[str, list[dict]] = {}
    goal = args.target_loss
    with tempfile.TemporaryDirectory() as peer_dir:
        if args.nanogpt:
            peer_nanogpt.prepare(args.nanogpt, Path(peer_dir), tok.chars, train_ids, val_ids)
            cmd = peer_nanogpt.command(MODEL, identical, args.compile)
        for n in range(rounds):
            start = time.perf_counter()
            if args.only in (None, "identical"):
                r = run_identical(tok, train_ids, val_ids, identical, args.threads, **extra)
                runs.setdefault(IDENTICAL_RUN, []).append({**r, "shape": "same"})
            if args.nanogpt:
                r = peer_nanogpt.run(
                    Path(peer_dir), cmd, args.threads, identical["batch_size"], BLOCK, identical["eval_every"]
                )
                runs.setdefault(NANOGPT, []).append({**r, "shape": "same"})
            if control_steps:
                r = run_control(
                    train_ids, tok.vocab_size, control_steps, identical["batch_size"], args.threads
                )
                runs.setdefault(CONTROL, []).append({**r, "shape": "same"})
            if args.only in (None, "target"):
                if goal is None:  # the reference measured in the first round
                    goal = runs[NANOGPT if args.nanogpt else IDENTICAL_RUN][0]["val"]
                r = run_to_target(tok, train_ids, val_ids, target, eval_from, goal, args.threads, **extra)
                runs.setdefault(TARGET_RUN, []).append({**r, "shape": "target"})
            machine.measure()
            print(f"round {n + 1}/{rounds}: {time.perf_counter() - start:.0f} s", flush=True)
    results = {name: best(rs) for name, rs in runs.items()}
    print_results(results, shapes, machine)
    print_verdicts(results, goal, args.target_loss is not None)
    if args.json:

        def plain(v: object) -> object:  # NaN (no val loss) is not JSON
            return None if isinstance(v, float) and v != v else v

        keep = {k: {kk: plain(vv) for kk, vv in v.items() if kk != "model"} for k, v in results.items()}
        args.json.write_text(json.dumps({"machine": machine.caption(), "runs": keep}, indent=2))


if __name__ == "__main__":
    main()
