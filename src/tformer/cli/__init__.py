"""The `tformer` command line: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module exposing ``register(subparsers)``; the parser it adds sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
User mistakes (``TformerError``, ``ValueError``, missing files) print one line to stderr, never a traceback,
worded for the command line: where the library's message names a Python argument (``do_sample=False``),
the CLI names the flag (``--do-sample``). Library warnings print as one ``tformer: warning:`` line each.
Exit codes: 0 done, 2 a user mistake, 130 / 143 stopped by Ctrl-C / SIGTERM (128 + the signal).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings

from tformer._version import __version__
from tformer.errors import TformerError, first_line

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
    parser.add_argument("--version", action="version", version=f"tformer {__version__}")
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
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser records itself in the namespace it parses (the deepest one wins), so
    that errors can be worded in that command's flags."""
    parser.set_defaults(cli_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


# Library hints that name no flag of the command that raised them, in command-line words.
_HINTS = {
    "use unknown='replace' or 'skip'": "use a tokenizer trained with `tformer tokenizer train --type char "
    "--unknown replace` (or skip)",
}
# a Python argument in a message: `name=value`, `name >= value`, ... (values: quoted or up to , ; ) space)
_ARGUMENT = re.compile(r"\b([a-z][a-z0-9_]*)( ?(?:>=|<=|>|<) ?|=)('[^']*'|\"[^\"]*\"|[^\s,;)]+)")
_SUBJECT = re.compile(r"^([a-z][a-z0-9_]*) (?=must |is |are |needs )")
# a bare identifier with an underscore (max_new_tokens): unmistakably a name, not an English word
_IDENTIFIER = re.compile(r"(?<![\w./'`-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b(?![=(])")


def cli_wording(message: str, parser: argparse.ArgumentParser | None) -> str:
    """``message`` with Python arguments that are flags of ``parser`` named as flags.

    Example (``tformer generate``): ``"...; for greedy decoding: do_sample=False"`` ->
    ``"...; for greedy decoding: without --do-sample"``; ``"top_p must be in (0, 1]"`` ->
    ``"--top-p must be in (0, 1]"``; ``"lower max_new_tokens"`` -> ``"lower --max-new-tokens"``.
    """
    for python, cli in _HINTS.items():
        message = message.replace(python, cli)
    if parser is None:
        return message
    flags = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "overrides"}

    def flag(match: re.Match) -> str:
        action = flags.get(match.group(1))
        if action is None:
            return match.group(0)
        name, op, value = action.option_strings[-1], match.group(2).strip(), match.group(3).strip("'\"")
        if isinstance(action, argparse._StoreTrueAction) and op == "=":
            return name if value == "True" else f"without {name}"
        return f"{name} {value}" if op == "=" else f"{name} {op} {value}"

    message = _ARGUMENT.sub(flag, message)
    message = _IDENTIFIER.sub(
        lambda m: flags[m.group(1)].option_strings[-1] if m.group(1) in flags else m.group(0), message
    )
    subject = _SUBJECT.match(message)
    if subject and subject.group(1) in flags:
        message = flags[subject.group(1)].option_strings[-1] + message[subject.end(1) :]
    return message


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "cli_parser", None)

    def warn(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"tformer: warning: {cli_wording(str(message), command)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = warn
        return _run(args, command)


def _run(args: argparse.Namespace, command: argparse.ArgumentParser | None) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as e:
        code = getattr(e, "exit_code", None)  # training stopped by a signal: it said so and saved
        if code is None:
            print("interrupted", file=sys.stderr)
        return code or 130
    except (
        TformerError,
        ValueError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        UnicodeDecodeError,
    ) as e:
        msg = first_line(e)
        print(f"tformer: error: {cli_wording(msg, command)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
