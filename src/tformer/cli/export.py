"""`tformer export --model DIR --out DIR [--format hf] [--overwrite]`: a model directory in Hugging Face's layout.

The model (tformer or Hugging Face directory) is written as config.json, model.safetensors and
generation_config.json, with the tokenizer beside it (tokenizer.json, tokenizer_config.json) when the model
directory holds one, so that ``transformers``' Auto classes load the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# files that mean a directory holds a tokenizer (any format tformer reads)
_TOKENIZER_FILES = ("tformer_tokenizer.json", "tokenizer.json", "vocab.json", "encoder.json", "vocab.txt")


def _tokenizer(model_dir: Path, skip: bool):
    """The tokenizer in the model directory, None when there is none (or ``--no-tokenizer``)."""
    if skip or not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from tformer.errors import ConfigError
    from tformer.tokenizers import load_tokenizer

    try:
        return load_tokenizer(model_dir)
    except ConfigError as e:
        raise ConfigError(f"{e}; pass --no-tokenizer to export the model alone") from None


def run(args: argparse.Namespace) -> int:
    """Load the model (and tokenizer), write the export, print where it went."""
    import tformer
    from tformer.interop.export import AUTO_CLASSES, architecture_for

    model_dir = Path(args.model)
    model = tformer.from_pretrained(model_dir)
    tokenizer = _tokenizer(model_dir, args.no_tokenizer)
    tformer.save_pretrained(
        model, args.out, format=args.format, tokenizer=tokenizer, overwrite=args.overwrite
    )
    arch = architecture_for(model.config)
    if tokenizer is not None:
        with_tok = " and its tokenizer"
    else:
        with_tok = " without a tokenizer" if args.no_tokenizer else " (no tokenizer in the model directory)"
    print(f"exported {arch}{with_tok} to {args.out}; load it with transformers.{AUTO_CLASSES[arch]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    p = sub.add_parser(
        "export",
        help="write a model directory in Hugging Face's layout (transformers loads it)",
        description="Export a tformer or Hugging Face model directory (and its tokenizer) to a directory "
        "that transformers' Auto classes load.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (tformer or Hugging Face)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created if missing)")
    p.add_argument("--format", choices=("hf",), default="hf", help="hf: Hugging Face transformers (default)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.add_argument("--no-tokenizer", action="store_true", help="export the model without its tokenizer")
    p.set_defaults(func=run)
