"""`tformer eval --model DIR --data PATH`: loss and perplexity (or accuracy) of a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tformer.cli.generate import DTYPES
from tformer.training.tasks import TASK_NAMES


def run(args: argparse.Namespace) -> int:
    """Print the metrics of a model directory on ``--data`` (one line per metric, or one JSON object)."""
    from tformer import from_pretrained, load_tokenizer
    from tformer.training.evaluate import evaluate_model, infer_task
    from tformer.training.tasks import task_class

    model = from_pretrained(args.model, device=args.device, dtype=args.dtype)
    task = args.task or infer_task(Path(args.model), model.config)
    metrics = evaluate_model(
        model,
        load_tokenizer(args.model) if task_class(task).uses_tokenizer else None,
        args.model,
        args.data or [],
        task=task,
        batch_size=args.batch_size,
        block_size=args.block_size,
        max_batches=args.max_batches,
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name} {value:.4f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command."""
    p = sub.add_parser(
        "eval",
        help="evaluate a trained model on a data file",
        description="Print loss and perplexity (accuracy for classification) of a model directory.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory written by tformer train")
    p.add_argument(
        "--data", nargs="+", default=None, metavar="PATH", help="the data, in the training formats"
    )
    p.add_argument(
        "--task",
        default=None,
        choices=TASK_NAMES,
        help="default: the task the model was trained for",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=None, help="default: the training block size")
    p.add_argument("--max-batches", type=int, default=None, help="evaluate at most this many batches")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights' dtype (default: the checkpoint's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
