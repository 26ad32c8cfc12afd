"""The `tformer` command line: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module exposing ``register(subparsers)``; the parser it adds sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
User mistakes (``TformerError``, ``ValueError``, missing files) print one line to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tformer.errors import TformerError

# Modules under tformer.cli that provide subcommands, in the order shown by --help.
_COMMAND_MODULES = (
    "inspect",
    "tokenizer",
    "train",
    "eval",
    "generate",
    "export",
    "attention",
    "data",
    "demo",
    "merge_lora",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="tformer", description="The Transformer from scratch in PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tformer.cli.{name}")
        except ModuleNotFoundError as e:  # a subcommand not written yet
            if e.name == f"tformer.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (
        TformerError,
        ValueError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        UnicodeDecodeError,
    ) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"tformer: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
