"""`tformer train`: train a model of any family on your data (or a synthetic task), resumably.

tformer train --preset gpt-tiny --task clm --data input.txt --out runs/a --max-steps 60 --set seed=3
tformer train --out runs/a --max-steps 120 --resume
tformer train --init-from bert-dir --task classify --data reviews.csv --out runs/b --lora r=8,alpha=16,targets=q,v
tformer train --preset vit-tiny --task image-classify --data digits --out runs/c
torchrun --nproc_per_node 2 -m tformer.cli train ...      # data-parallel
"""

from __future__ import annotations

import argparse
import logging
import sys

from tformer.training.tasks import TASK_NAMES


class _TqdmHandler(logging.Handler):
    """Log lines written through tqdm so they do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging() -> None:
    """Send ``tformer.training``'s log lines to stderr through tqdm, once, at INFO (not to the root)."""
    log = logging.getLogger("tformer.training")
    if not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `tformer train` and `tformer demo`."""
    p.add_argument("--out", required=False, help="run directory (model, tokenizer, checkpoints, metrics)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a ModelConfig or TrainConfig field (repeatable), e.g. --set lr=3e-4",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps from the start of the run")
    p.add_argument("--minutes", type=float, default=None, help="fit a new run into this wall time")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _init_model(directory: str | None):
    """The ``--init-from`` model (tformer or Hugging Face directory), loaded here: training never loads."""
    if directory is None:
        return None
    from tformer.loading import from_pretrained

    return from_pretrained(directory)


def run(args: argparse.Namespace) -> int:
    """Train as the flags describe (new run or ``--resume``); the main process prints the final metrics."""
    from tformer.training import distributed
    from tformer.training.launch import RunSpec, run_training

    if not args.out:
        raise ValueError("--out DIR is required")
    if args.init_from and args.resume:
        raise ValueError("--resume continues from the run's checkpoint; drop --init-from")
    setup_logging()
    spec = RunSpec(
        out=args.out,
        task=args.task,
        preset=args.preset,
        data=args.data or [],
        overrides=args.overrides,
        resume=args.resume,
        overwrite=args.overwrite,
        max_steps=args.max_steps,
        minutes=args.minutes,
        device=args.device,
        progress=not args.no_progress,
        init_model=_init_model(args.init_from),
        init_from=args.init_from,
        freeze=args.freeze,
        lora=args.lora,
    )
    result = run_training(spec)
    if distributed.env_info().is_main:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        print(f"trained {result.step} steps; {summary or 'no evaluation data'}; model in {result.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    p = sub.add_parser(
        "train",
        help="train a model on your data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default=None, help="model preset (default: a tiny one for the task)")
    p.add_argument(
        "--task",
        default=None,
        choices=TASK_NAMES,
        help="training objective (default: clm)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        metavar="PATH",
        help="text files (clm, mlm), TSV/JSONL pairs (seq2seq), CSV/JSONL text,label (classify); "
        "image-classify: a folder of class folders, an .npz (images, labels) or 'digits'",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="DIR",
        help="start from a pretrained tformer or Hugging Face directory (its weights and tokenizer); "
        "the task's head is added or replaced",
    )
    p.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="PART",
        help="freeze embeddings, layers:A-B or all-but-head (repeatable)",
    )
    p.add_argument(
        "--lora",
        default=None,
        metavar="SPEC",
        help="train LoRA adapters only, e.g. r=8,alpha=16,targets=q,v (also dropout=, bias=, save=)",
    )
    add_common_arguments(p)
    p.set_defaults(func=run)
