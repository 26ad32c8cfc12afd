"""`tformer inspect MODEL_DIR_OR_PRESET`: parameters, FLOPs, KV-cache and attention memory of a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tformer.errors import ConfigError


def load_config(target: str):
    """A ModelConfig from a preset name or a model directory (tformer or Hugging Face format)."""
    from tformer.loading import read_model_config
    from tformer.presets import PRESETS, get_preset

    path = Path(target)
    if path.is_dir():
        return read_model_config(path)
    if target in PRESETS:
        return get_preset(target)
    raise ConfigError(
        f"{target!r} is neither a model directory nor a preset; presets: {', '.join(sorted(PRESETS))}"
    )


def run(args: argparse.Namespace) -> int:
    from tformer.inspect import format_report, inspect_config

    cfg = load_config(args.model)
    report = inspect_config(cfg, seq_len=args.seq_len, dtype=args.dtype, batch_size=args.batch_size)
    print(format_report(report, name=args.model))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="parameters, FLOPs, KV-cache and attention memory of a model",
        description="Print the complexity figures of a preset or a model directory.",
    )
    p.add_argument("model", metavar="MODEL_DIR_OR_PRESET")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the model's context)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch-size", type=int, default=1)
    p.set_defaults(func=run)
