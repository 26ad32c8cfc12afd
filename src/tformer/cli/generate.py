"""`tformer generate --model DIR --prompt TEXT [options] [--stream]`: text generation from a model directory.

The directory holds the model (tformer or Hugging Face format) and its tokenizer (tformer's
``tformer_tokenizer.json``, GPT-2's ``vocab.json`` + ``merges.txt``, ...), or ``--tokenizer`` names one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tformer.cli import speculative_options
from tformer.errors import ConfigError, DataError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt text: ``--prompt`` itself, or the UTF-8 contents of ``--prompt-file``."""
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise DataError(f"prompt file {path} does not exist")
        return path.read_text(encoding="utf-8")
    return args.prompt


def load_tokenizer_for(model_dir: str, tokenizer_dir: str | None):
    """The tokenizer beside the model (or at --tokenizer), with a one-line error when there is none."""
    from tformer import load_tokenizer

    where = tokenizer_dir or model_dir
    try:
        return load_tokenizer(where)
    except ConfigError as e:
        if tokenizer_dir is None and str(e).startswith("no tokenizer"):  # not a damaged one: none at all
            raise ConfigError(
                f"model directory {model_dir} has no tokenizer ({e}); pass --tokenizer DIR"
            ) from None
        raise


def fit_prompt(ids: list[int], model, max_new_tokens: int, truncate: bool) -> list[int]:
    """With --truncate, keep the end of a decoder prompt (the start of a source) so it fits the context."""
    cfg = model.config
    decoder_only = cfg.arch == "decoder"
    room = cfg.max_seq_len - (max_new_tokens if decoder_only else 0)
    if not truncate or len(ids) <= room:
        return ids
    if room < 1:
        raise ConfigError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the context of "
            f"{cfg.max_seq_len} tokens"
        )
    return ids[-room:] if decoder_only else ids[:room]


def generation_options(args: argparse.Namespace, model, tok) -> dict:
    """``generate`` keyword arguments from the flags; EOS and pad ids from the model, else the tokenizer."""
    opts = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        num_return_sequences=args.num_return_sequences,
        repetition_penalty=args.repetition_penalty,
        length_penalty=args.length_penalty,
        seed=args.seed,
        use_cache=not args.no_cache,
        crop_context=args.crop_context,
    )
    cfg = model.config
    opts["eos_token_id"] = cfg.eos_token_id if cfg.eos_token_id is not None else tok.eos_token_id
    opts["pad_token_id"] = cfg.pad_token_id if cfg.pad_token_id is not None else tok.pad_token_id
    if args.stop:
        opts["stop_strings"] = args.stop
    return opts


def write(text: str) -> None:
    """Write to stdout at once (streamed tokens must show as they come)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """Generate from ``--prompt`` and print the text (streamed, per returned sequence, or speculative)."""
    import torch

    import tformer
    from tformer.generation import TextStreamer, stream_text
    from tformer.kernels import native_kernels

    tok = load_tokenizer_for(args.model, args.tokenizer)
    model = tformer.from_pretrained(args.model, dtype=args.dtype)
    if model.config.arch == "encoder":
        raise ConfigError(f"{args.model} holds an encoder-only model, which cannot generate text")
    prompt = read_prompt(args)
    ids = fit_prompt(tok.encode(prompt, allowed_special="all"), model, args.max_new_tokens, args.truncate)
    input_ids = torch.tensor([ids], dtype=torch.long)
    opts = generation_options(args, model, tok)
    spec = speculative_options.speculative_options(args, model, tok, prompt)
    echo = prompt if model.config.arch == "decoder" and not args.no_echo else ""
    if args.stream and opts["num_return_sequences"] > 1:
        raise ConfigError("--stream shows one sequence; drop --num-return-sequences")
    with native_kernels(model, enabled=args.native_kernels):
        if args.stream and not spec:
            pieces = stream_text(model, tok, input_ids, **opts)
            first = next(pieces, "")  # the checks run before anything is printed
            write(echo + first)
            for piece in pieces:
                write(piece)
            write("\n")
            return 0
        streamer = TextStreamer(tok, write) if args.stream else None  # speculative: tokens come in blocks
        write(echo if streamer else "")
        began = time.perf_counter()
        result = model.generate(input_ids, tokenizer=tok, streamer=streamer, return_dict=True, **opts, **spec)
        seconds = time.perf_counter() - began
    if streamer is not None:
        streamer.end()
        write("\n")
    else:
        out = result.sequences
        start = len(ids) if model.config.arch == "decoder" else 1
        for i, row in enumerate(out):
            if len(out) > 1:
                write(f"--- sequence {i + 1} ---\n")
            write(echo + tok.decode(row[start:].tolist(), skip_special_tokens=True) + "\n")
    if spec:
        speculative_options.report(result, len(ids), opts["eos_token_id"], seconds)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``generate`` command with its sampling, beam, speculative and native-kernel options."""
    p = sub.add_parser(
        "generate",
        help="generate text from a model directory",
        description="Generate a continuation (decoder-only) or an output (encoder-decoder) "
        "with the model directory's tokenizer.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (tformer or Hugging Face)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt text")
    src.add_argument("--prompt-file", metavar="F", help="read the prompt from a UTF-8 file")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the model directory)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy / beam search")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--num-return-sequences", type=int, default=1)
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--stop", action="append", metavar="STR", help="stop when the text ends in STR (repeatable)"
    )
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut a prompt that does not fit the context instead of failing",
    )
    p.add_argument(
        "--crop-context",
        action="store_true",
        help="run past the model's context: each new token sees only the last max_seq_len tokens (nanoGPT)",
    )
    p.add_argument("--no-echo", action="store_true", help="print only the generated text, not the prompt")
    p.add_argument("--no-cache", action="store_true", help="recompute everything each step (slow; reference)")
    p.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="weights' dtype (default: the checkpoint's)"
    )
    speculative_options.add_arguments(p)
    p.add_argument(
        "--native-kernels",
        action="store_true",
        help="faster batch-1 decoding on AVX2 CPUs (compiles C++ on first use, about a minute)",
    )
    p.set_defaults(func=run)
