"""`tformer generate --draft-model DIR [--num-draft-tokens K] | --prompt-lookup N`: the speculative options.

The draft model must share the model's tokenizer; its acceptance figures and the speed are printed to
stderr at the end (stdout keeps only the text).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tformer.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--draft-model / --num-draft-tokens / --prompt-lookup."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--draft-model",
        metavar="DIR",
        help="speculative decoding: a smaller model with the same tokenizer drafts tokens the model checks",
    )
    which.add_argument(
        "--prompt-lookup",
        type=int,
        metavar="N",
        help="prompt lookup decoding: draft up to N tokens copied from where the text's last words occurred",
    )
    p.add_argument(
        "--num-draft-tokens",
        type=int,
        metavar="K",
        help="tokens the draft model proposes per step (default 20)",
    )


def same_tokenizer(args: argparse.Namespace, tok: Any, prompt: str) -> None:
    """A tokenizer beside the draft model must be the model's (same size, same ids for the prompt)."""
    from tformer import load_tokenizer

    try:
        draft_tok = load_tokenizer(args.draft_model)
    except ConfigError:
        return  # no tokenizer beside the draft: generate still checks the vocabulary sizes
    if draft_tok.vocab_size != tok.vocab_size or draft_tok.encode(prompt) != tok.encode(prompt):
        raise ConfigError(
            f"the draft model's tokenizer ({args.draft_model}, {draft_tok.vocab_size} tokens) differs from the "
            f"model's ({args.tokenizer or args.model}, {tok.vocab_size} tokens); they must be the same"
        )


def speculative_options(args: argparse.Namespace, model: Any, tok: Any, prompt: str) -> dict[str, Any]:
    """``generate`` options for the flags given ({} without any)."""
    import tformer

    if args.num_draft_tokens is not None and args.draft_model is None:
        raise ConfigError("--num-draft-tokens needs --draft-model")
    if args.prompt_lookup is not None:
        return {"prompt_lookup_num_tokens": args.prompt_lookup}
    if args.draft_model is None:
        return {}
    same_tokenizer(args, tok, prompt)
    draft = tformer.from_pretrained(args.draft_model, dtype=model.dtype)
    options: dict[str, Any] = {"assistant_model": draft}
    if args.num_draft_tokens is not None:
        options["num_assistant_tokens"] = args.num_draft_tokens
    return options


def report(output: Any, prompt_len: int, eos: int | list[int] | None, seconds: float) -> None:
    """Print drafted / accepted tokens and tok/s of a speculative ``GenerateOutput`` to stderr."""
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    new = 0
    for row in output.sequences[:, prompt_len:].tolist():
        ends = [i for i, t in enumerate(row) if t in eos_ids]
        new += ends[0] + 1 if ends else len(row)
    drafted, accepted = int(output.num_drafted.sum()), int(output.num_accepted.sum())
    print(
        f"drafted {drafted} tokens, accepted {accepted} ({100 * output.acceptance_rate:.1f}%); "
        f"{new} new tokens in {seconds:.2f} s ({new / max(seconds, 1e-9):.1f} tok/s)",
        file=sys.stderr,
    )
