"""`tformer demo`: train a small character-level GPT for a few minutes, then print a sample.

With no ``--data`` it trains on text every Python installation ships offline: the English reference
documentation in ``pydoc_data/topics.py`` (the text behind ``help('if')``), so nothing third-party
lives in this repository. It is ``tformer train --task clm`` with the recipe below plus a sample at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_PRESET = "gpt-tiny"
#: A ~3.2M-parameter GPT (4 layers, 256 wide, context 128) and a recipe that learns fast on 2 CPU cores.
DEMO_RECIPE = [
    "d_model=256",
    "n_heads=4",
    "n_layers=4",
    "d_ff=1024",
    "max_seq_len=128",
    "activation=gelu",
    "block_size=128",
    "batch_size=32",
    "lr=2e-3",
    "min_lr=2e-4",
    "warmup_steps=40",
    "weight_decay=0.1",
    "betas=0.9,0.99",
    "eval_every=100",
    "eval_batches=8",
    "log_every=10",
]
DEFAULT_MINUTES = 2.5
DEFAULT_PROMPT = "The "


def pydoc_corpus() -> str:
    """The Python reference topics (``help()`` pages) as one text, in a fixed order."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[name].strip() for name in sorted(topics.topics)) + "\n"


def corpus_file(out: Path) -> Path:
    """Write the pydoc corpus under ``out/cache`` once and return its path."""
    path = out / "cache" / "pydoc_topics.txt"
    text = pydoc_corpus()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def sample(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float, seed: int) -> str:
    """A sampled continuation of ``prompt`` (top-k 40), of any length.

    The model's positions stop at its context, so the sample is drawn in chunks: each chunk continues
    the last half-context of text, as nanoGPT's sampler crops its input to the block size.
    """
    import torch

    context = model.config.max_seq_len
    keep = max(1, context // 2)
    ids = tokenizer.encode(prompt)[-keep:]
    text_ids, produced, chunk = list(ids), 0, 0
    model.eval()
    while produced < max_new_tokens:
        window = text_ids[-keep:]
        n = min(max_new_tokens - produced, context - len(window))
        prompt_ids = torch.tensor([window], dtype=torch.long, device=model.device)
        out = model.generate(
            prompt_ids, max_new_tokens=n, do_sample=True, temperature=temperature, top_k=40, seed=seed + chunk
        )
        new = out[0, len(window) :].tolist()
        if not new:
            break
        text_ids += new
        produced, chunk = produced + len(new), chunk + 1
    return tokenizer.decode(text_ids)


def run(args: argparse.Namespace) -> int:
    """Train the demo GPT (or resume it), then print a sample; after Ctrl-C, one of the model saved then."""
    from tformer.cli.train import setup_logging
    from tformer.training.launch import RunSpec, run_training
    from tformer.training.rundir import RUN_FILE

    out = Path(args.out)
    setup_logging()
    data = args.data or [str(corpus_file(out))]
    source = ", ".join(args.data) if args.data else "Python's offline reference docs (pydoc_data/topics.py)"
    minutes = None if args.max_steps else (args.minutes or DEFAULT_MINUTES)
    budget = f"{args.max_steps} steps" if args.max_steps else f"about {minutes:g} minutes"
    print(
        f"tformer demo: training a character-level GPT (~3.2M parameters) on {source} for {budget}; "
        "Ctrl-C stops early and still prints a sample.",
        file=sys.stderr,
    )
    overwrite = not args.resume and (out / RUN_FILE).is_file()  # the demo replaces its own previous run
    spec = RunSpec(
        out=out,
        task="clm",
        preset=DEMO_PRESET,
        data=data,
        overrides=DEMO_RECIPE + args.overrides,
        resume=args.resume,
        overwrite=overwrite or args.overwrite,
        max_steps=args.max_steps,
        minutes=minutes,
        device=args.device,
        progress=not args.no_progress,
    )
    try:
        result = run_training(spec)
        model, tok = result.model, result.tokenizer
        summary = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        print(f"trained {result.step} steps ({summary}); model and tokenizer in {out}", file=sys.stderr)
    except KeyboardInterrupt:
        import tformer

        model, tok = tformer.from_pretrained(out), tformer.load_tokenizer(out)
    text = sample(model, tok, args.prompt, args.tokens, args.temperature, args.seed)
    print("--- sample " + "-" * 60)
    print(text)
    print("-" * 71)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command: ``train``'s common options plus ``--data`` and the sampling options."""
    from tformer.cli.train import add_common_arguments

    p = sub.add_parser(
        "demo",
        help="train a small GPT for ~2.5 minutes and print a sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", default=None, metavar="PATH", help="your own text files")
    add_common_arguments(p)
    p.set_defaults(out="runs/demo")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the text the sample continues")
    p.add_argument("--tokens", type=int, default=400, help="characters to sample")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.set_defaults(func=run)
