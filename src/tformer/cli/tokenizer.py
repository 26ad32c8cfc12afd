"""``tformer tokenizer train|encode|decode``: train a vocabulary (byte-level BPE, WordPiece, characters), turn
stdin into ids and back."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from tformer.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tokenizer`` command and its ``train``, ``encode`` and ``decode`` actions."""
    parser = subparsers.add_parser("tokenizer", help="train a tokenizer, encode text to ids, decode ids")
    actions = parser.add_subparsers(dest="tokenizer_action", metavar="ACTION")
    actions.required = True

    train = actions.add_parser(
        "train", help="learn a byte-level BPE, WordPiece or character vocabulary from text files"
    )
    train.add_argument("--data", nargs="+", required=True, metavar="FILE", help="UTF-8 text files")
    train.add_argument(
        "--vocab-size", type=int, help="final vocabulary size, special tokens included (BPE, WordPiece)"
    )
    train.add_argument("--out", required=True, metavar="DIR", help="directory to write the tokenizer to")
    train.add_argument(
        "--kind",
        "--type",
        dest="type",
        choices=("bpe", "wordpiece", "char"),
        default="bpe",
        help="tokenizer kind (default bpe)",
    )
    train.add_argument("--min-frequency", type=int, default=0, help="least count for a pair to be merged")
    train.add_argument(
        "--special-tokens",
        nargs="*",
        default=None,
        metavar="TOKEN",
        help="default: <|endoftext|> for BPE, [PAD] [UNK] [CLS] [SEP] [MASK] for WordPiece",
    )
    train.add_argument("--cased", action="store_true", help="WordPiece: keep case and accents")
    train.add_argument(
        "--limit-alphabet", type=int, help="WordPiece: keep only the N most frequent characters"
    )
    train.add_argument(
        "--hf", action="store_true", help="also write Hugging Face's tokenizer.json and tokenizer_config.json"
    )
    train.add_argument("--pattern", default="gpt2", help="pre-tokenisation: gpt2, cl100k or a regex")
    train.add_argument(
        "--layout", choices=("gpt2", "hf"), default="gpt2", help="special tokens last or first"
    )
    train.add_argument("--unknown", choices=("error", "replace", "skip"), default="error", help="char policy")
    train.add_argument(
        "--errors", choices=("strict", "replace", "ignore"), default="strict", help="bad UTF-8"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)

    encode = actions.add_parser("encode", help="read text on stdin, print its ids")
    encode.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory or file")
    encode.add_argument("--allow-special", action="store_true", help="turn special-token text into its id")
    encode.add_argument("--lines", action="store_true", help="encode each line on its own, one id line each")
    encode.add_argument(
        "--no-framing", action="store_true", help="no [CLS]/[SEP] (WordPiece) around the text"
    )
    encode.set_defaults(func=_encode)

    decode = actions.add_parser("decode", help="read ids on stdin, print the text")
    decode.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory or file")
    decode.add_argument("--skip-special", action="store_true", help="leave special tokens out")
    decode.set_defaults(func=_decode)


def _progress_bar(enabled: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm bar on stderr fed by the trainer's ``progress(done, total)`` calls, and its closer."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, initial=done - 1, desc="merges", unit=" tok", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _train(args: argparse.Namespace) -> int:
    from tformer.tokenizers import ByteLevelBPETokenizer, CharTokenizer, iter_lines

    start = time.perf_counter()
    lines = iter_lines(args.data, errors=args.errors)
    if not args.no_progress:
        from tqdm import tqdm

        lines = tqdm(lines, desc="reading", unit=" lines", file=sys.stderr, leave=False)
    if args.type == "char":
        tok = CharTokenizer.train(lines, special_tokens=args.special_tokens or (), unknown=args.unknown)
    elif args.type == "wordpiece":
        tok = _train_wordpiece(args, lines)
    else:
        if args.vocab_size is None:
            raise DataError("BPE training needs --vocab-size N (e.g. 8192)")
        specials = ("<|endoftext|>",) if args.special_tokens is None else args.special_tokens
        progress, close = _progress_bar(not args.no_progress)
        try:
            tok = ByteLevelBPETokenizer.train(
                lines,
                args.vocab_size,
                min_frequency=args.min_frequency,
                special_tokens=specials,
                pattern=args.pattern,
                layout=args.layout,
                progress=progress,
            )
        finally:
            close()
    out = tok.save(args.out)
    if args.hf:
        tok.save(out, format="hf")
    print(
        f"saved {args.type} tokenizer (vocab_size {tok.vocab_size}) to {out} in {time.perf_counter() - start:.1f}s"
    )
    return 0


def _train_wordpiece(args: argparse.Namespace, lines):
    from tformer.tokenizers import WordPieceTokenizer
    from tformer.tokenizers.wordpiece import BERT_SPECIALS

    if args.vocab_size is None:
        raise DataError("WordPiece training needs --vocab-size N (e.g. 30522)")
    progress, close = _progress_bar(not args.no_progress)
    try:
        return WordPieceTokenizer.train(
            lines,
            args.vocab_size,
            min_frequency=args.min_frequency,
            special_tokens=BERT_SPECIALS if args.special_tokens is None else args.special_tokens,
            lowercase=not args.cased,
            limit_alphabet=args.limit_alphabet,
            progress=progress,
        )
    finally:
        close()


def _read_stdin_text() -> str:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream (tests substitute io.StringIO)
        return sys.stdin.read()
    data = buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"stdin: invalid UTF-8 at byte offset {e.start}") from None


def _encode(args: argparse.Namespace) -> int:
    from tformer.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    allowed = "all" if args.allow_special else ()
    text = _read_stdin_text()
    texts = text.splitlines() if args.lines else [text]
    for piece in texts:
        ids = tok.encode(piece, add_special_tokens=not args.no_framing, allowed_special=allowed)
        sys.stdout.write(" ".join(map(str, ids)) + "\n")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from tformer.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    words = _read_stdin_text().split()
    try:
        ids = [int(w) for w in words]
    except ValueError:
        bad = next(w for w in words if not w.lstrip("-").isdigit())
        raise DataError(f"stdin: {bad!r} is not an integer id; give ids separated by spaces") from None
    sys.stdout.write(tok.decode(ids, skip_special_tokens=args.skip_special))
    sys.stdout.flush()
    return 0
