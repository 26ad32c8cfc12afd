"""`tformer inspect MODEL_DIR_OR_PRESET`: parameters, FLOPs, KV-cache and attention memory of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tformer.attention_params import ATTENTION_PARAMS
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
    """Print the report of a preset or model directory; ``--attention-kind all`` adds a line per kind."""
    from tformer.inspect import compare_kinds, format_kinds, format_report, inspect_config

    cfg = load_config(args.model)
    if args.attention_kind not in (None, "all"):
        cfg = cfg.replace(attention_kind=args.attention_kind, attention_params=_params(args.attention_params))
    report = inspect_config(cfg, seq_len=args.seq_len, dtype=args.dtype, batch_size=args.batch_size)
    print(format_report(report, name=args.model))
    if args.attention_kind == "all":
        print()
        print(format_kinds(compare_kinds(cfg, args.seq_len, args.dtype, args.batch_size)))
    return 0


def _params(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--attention-params must be a JSON object, e.g. '{{\"window\": 64}}' ({e})"
        ) from None
    if not isinstance(params, dict):
        raise ConfigError("--attention-params must be a JSON object, e.g. '{\"window\": 64}'")
    return params


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` command."""
    p = sub.add_parser(
        "inspect",
        help="parameters, FLOPs, KV-cache and attention memory of a model",
        description="Print the complexity figures of a preset or a model directory.",
    )
    p.add_argument("model", metavar="MODEL_DIR_OR_PRESET")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the model's context)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--attention-kind",
        choices=[*ATTENTION_PARAMS, "all"],
        default=None,
        help="inspect with this attention kind ('all': a line per kind at its default parameters)",
    )
    p.add_argument(
        "--attention-params", default=None, help="the kind's parameters as JSON, e.g. '{\"window\": 64}'"
    )
    p.set_defaults(func=run)
