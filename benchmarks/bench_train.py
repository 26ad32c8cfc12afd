"""Training benchmark: tformer's loop on char-level tinyshakespeare against nanoGPT's CPU recipe.

    python benchmarks/bench_train.py [--data PATH] [--threads 2] [--only identical|target]

nanoGPT's README CPU recipe (4 layers, 4 heads, 128 wide, block 64, batch 12, lr 1e-3 cosine to 1e-4 over
2000 iterations, warmup 100, dropout 0, no biases, 20 evaluation batches every 250 iterations) takes about
92 s of wall time on this machine and ends at val loss 1.886: 2000 * 12 * 64 / 92 s = 16.7k tokens/s.

1. identical recipe: the same model (same parameter count) and schedule through ``Trainer.fit`` (metrics,
   checkpoints and plots included); target: at least 1.3x nanoGPT's tokens/s.
2. time to target: a same-size model, any recipe, until val loss <= 1.886 (evaluation time included);
   target: at most 60% of nanoGPT's wall time (55 s).

MFU uses 6 * N + 12 * L * T * d FLOPs per token (N: parameters without position embeddings), against
fp32 and bf16 matmul peaks measured in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from report import table  # noqa: E402

import tformer  # noqa: E402
from tformer.tokenizers import CharTokenizer  # noqa: E402
from tformer.training.config import TrainConfig  # noqa: E402
from tformer.training.tasks import CLMTask  # noqa: E402
from tformer.training.trainer import Trainer  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
NANOGPT_WALL_S, NANOGPT_VAL, NANOGPT_STEPS, NANOGPT_BATCH, BLOCK = 92.0, 1.886, 2000, 12, 64
NANOGPT_TOK_S = NANOGPT_STEPS * NANOGPT_BATCH * BLOCK / NANOGPT_WALL_S

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


def matmul_peak(dtype: torch.dtype, target_s: float = 0.2) -> float:
    """Best FLOP/s of a square matmul at the current thread count, as wide as fits ``target_s`` (at most
    2048): bf16 without native support falls back to a kernel hundreds of times slower than fp32."""

    def best(n: int, repeats: int) -> float:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        return 2 * n**3 / min(times)

    rate = best(256, 3)
    n = 256
    while n < 2048 and 2 * (2 * n) ** 3 / rate < target_s:
        n *= 2
    return best(n, 5)


def flops_per_token(model: torch.nn.Module, block: int) -> float:
    cfg = model.config
    n = model.num_parameters() - cfg.max_seq_len * cfg.d_model  # position embeddings are lookups
    return 6 * n + 12 * cfg.n_layers * block * cfg.d_model


def split_tokens(path: Path) -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)  # 65 characters, as nanoGPT's prepare.py
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


def run_identical(tok, train_ids, val_ids, threads: int, **extra) -> dict:
    """nanoGPT's recipe through the full ``Trainer.fit`` loop."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tok, train_ids, val_ids, IDENTICAL, Path(tmp), threads, **extra)
        torch.set_num_threads(threads)
        metrics = trainer.fit()
        wall = time.perf_counter() - start
    steps = trainer.cfg.max_steps
    return {
        "wall": wall,
        "val": metrics["loss"],
        "steps": steps,
        "batch": trainer.cfg.batch_size,
        "tokens": steps * trainer.cfg.batch_size * BLOCK,
        "model": trainer.model,
        "reached": None,
    }


def run_to_target(tok, train_ids, val_ids, threads: int, **extra) -> dict:
    """Train with ``TARGET`` and stop at the first evaluation at or below nanoGPT's final val loss."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tok, train_ids, val_ids, TARGET, Path(tmp), threads, TARGET_MODEL, **extra)
        torch.set_num_threads(threads)
        cfg, val, step, reached = trainer.cfg, float("nan"), 0, None
        while step < cfg.max_steps:
            step += 1
            trainer.train_step(step)
            if (step >= TARGET_EVAL_FROM and step % cfg.eval_every == 0) or step == cfg.max_steps:
                val = trainer.evaluate()["loss"]
                if val <= NANOGPT_VAL:
                    reached = time.perf_counter() - start
                    break
        wall = time.perf_counter() - start
    return {
        "wall": wall,
        "val": val,
        "steps": step,
        "batch": cfg.batch_size,
        "tokens": step * cfg.batch_size * BLOCK,
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


def run_control(train_ids: np.ndarray, vocab: int, steps: int, threads: int) -> dict:
    """A nanoGPT-style eager loop on a plain GPT of the same shape: per-row batch stacking, foreach AdamW
    (nanoGPT fuses only on CUDA), a loss.item() per step. Timed back to back with tformer, so machine load
    affects both alike."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d, layers, heads = MODEL["d_model"], MODEL["n_layers"], MODEL["n_heads"]
    nn = torch.nn
    tok, pos = nn.Embedding(vocab, d), nn.Embedding(BLOCK, d)
    blocks, ln_f = nn.ModuleList(_Block(d, heads) for _ in range(layers)), nn.LayerNorm(d, bias=False)
    params = [*tok.parameters(), *pos.parameters(), *blocks.parameters(), *ln_f.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    data = torch.from_numpy(train_ids.astype(np.int64))
    start = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(len(data) - BLOCK - 1, (NANOGPT_BATCH,))
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
    wall = time.perf_counter() - start
    return {"wall": wall, "steps": steps, "tok_s": steps * NANOGPT_BATCH * BLOCK / wall}


def row(name: str, r: dict, peaks: dict[str, float]) -> list[str]:
    tok_s = r["tokens"] / r["wall"]
    fpt = flops_per_token(r["model"], BLOCK) if r["model"] is not None else None
    # against a bf16 peak below the fp32 one (no native bf16 arithmetic) an fp32 run's MFU is meaningless
    usable = {"fp32": True, "bf16": peaks["bf16"] > peaks["fp32"]}
    mfu = [f"{100 * tok_s * fpt / peaks[k]:.1f}%" if fpt and usable[k] else "-" for k in ("fp32", "bf16")]
    params = f"{r['model'].num_parameters() / 1e6:.3f}M" if r["model"] is not None else "0.80M + pos"
    return [
        name,
        params,
        f"{r['steps']} x {r['batch']}",
        f"{r['wall']:.1f}",
        f"{tok_s:,.0f}",
        f"{tok_s / NANOGPT_TOK_S:.2f}x",
        f"{r['val']:.3f}",
        *mfu,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["identical", "target"], default=None)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time counted)"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument(
        "--control-steps",
        type=int,
        default=300,
        help="steps of a nanoGPT-style control loop timed in this run (0: skip)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"torch {torch.__version__}, {args.threads} threads; matmul peak fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s"
    )
    print(f"nanoGPT reference: {NANOGPT_WALL_S:.0f} s wall, val {NANOGPT_VAL}, {NANOGPT_TOK_S:,.0f} tokens/s")
    if peaks["bf16"] <= peaks["fp32"]:
        print(
            "bf16 matmuls run slower than fp32 here (no native bf16 arithmetic on this CPU): training runs in "
            "fp32, and the MFU bf16 column is left empty"
        )
    tok, train_ids, val_ids = split_tokens(args.data)
    extra = {"compile": args.compile, "precision": "bf16" if args.bf16 else "fp32"}
    results = {}
    if args.only in (None, "identical"):
        results["tformer, identical recipe"] = run_identical(tok, train_ids, val_ids, args.threads, **extra)
    if args.only in (None, "target"):
        results["tformer, time to target"] = run_to_target(tok, train_ids, val_ids, args.threads, **extra)
    reference = {
        "wall": NANOGPT_WALL_S,
        "val": NANOGPT_VAL,
        "steps": NANOGPT_STEPS,
        "batch": NANOGPT_BATCH,
        "tokens": NANOGPT_STEPS * NANOGPT_BATCH * BLOCK,
        "model": None,
        "reached": None,
    }
    rows = [row("nanoGPT (reference)", reference, peaks)]
    rows += [row(name, r, peaks) for name, r in results.items()]
    table(
        None,
        [
            "run",
            "params",
            "steps x batch",
            "wall s",
            "tokens/s",
            "vs nanoGPT",
            "val loss",
            "MFU fp32",
            "MFU bf16",
        ],
        rows,
    )
    if "tformer, identical recipe" in results:
        r = results["tformer, identical recipe"]
        speed = r["tokens"] / r["wall"] / NANOGPT_TOK_S
        print(
            f"\n(1) identical recipe: {speed:.2f}x nanoGPT's tokens/s (target >= 1.30x): "
            f"{'met' if speed >= 1.3 else 'NOT met'}"
        )
    if "tformer, time to target" in results:
        r = results["tformer, time to target"]
        ok = r["reached"] is not None and r["reached"] <= 0.6 * NANOGPT_WALL_S
        when = f"{r['reached']:.1f} s" if r["reached"] is not None else "not reached"
        print(
            f"(2) time to val loss <= {NANOGPT_VAL}: {when} = "
            f"{(r['reached'] or float('nan')) / NANOGPT_WALL_S:.0%} of nanoGPT's wall time (target <= 60%): "
            f"{'met' if ok else 'NOT met'}"
        )
    if args.control_steps:
        c = run_control(train_ids, tok.vocab_size, args.control_steps, args.threads)
        print(
            f"control: a nanoGPT-style eager loop on the same model shape, {c['steps']} steps timed in this run: "
            f"{c['tok_s']:,.0f} tokens/s (training steps only)"
        )
        if "tformer, identical recipe" in results:
            r = results["tformer, identical recipe"]
            print(
                f"tformer's identical-recipe run (evaluation and checkpoints included) / control: "
                f"{r['tokens'] / r['wall'] / c['tok_s']:.2f}x"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in results.items()}, indent=2
            )
        )


if __name__ == "__main__":
    main()
