"""Regex pre-tokenisation and the GPT-2 byte-to-unicode table.

Byte-level BPE never merges across the chunks that a regex cuts the text into: words with their leading
space, runs of digits, runs of punctuation, runs of whitespace. This module holds the two standard
patterns (GPT-2's and GPT-4's ``cl100k``) and a splitter with an exact fast path for ASCII text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import regex

from tformer.errors import ConfigError

#: The pre-tokenisation regex of GPT-2 (also used by HF ``tokenizers``' ByteLevel pre-tokenizer).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: The pre-tokenisation regex of GPT-4's ``cl100k_base``: case-insensitive contractions, digits in
#: groups of at most three, newlines kept apart from other whitespace.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

#: Names accepted wherever a pattern is asked for.
PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN}

# On pure-ASCII text \p{L} is [A-Za-z], \p{N} is [0-9] and \s (Unicode White_Space) is these six
# characters, so the stdlib `re` engine, about 2.5x faster than `regex` here, splits identically.
_ASCII_WS = r"\t\n\x0b\x0c\r "
_GPT2_ASCII = re.compile(
    rf"""'(?:[stdm]|re|ve|ll)| ?[A-Za-z]+| ?[0-9]+| ?[^{_ASCII_WS}A-Za-z0-9]+"""
    rf"""|[{_ASCII_WS}]+(?![^{_ASCII_WS}])|[{_ASCII_WS}]+"""
)


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a pattern name (``"gpt2"``, ``"cl100k"``) or check a literal regex.

    Example:
        >>> resolve_pattern("gpt2") == GPT2_PATTERN
        True
    """
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise ConfigError(f"invalid pre-tokenisation regex {pattern!r}: {e}; use 'gpt2' or 'cl100k'") from e
    return pattern


def pattern_name(pattern: str) -> str:
    """Return ``"gpt2"``/``"cl100k"`` for a standard regex, else the regex itself (for saving)."""
    for name, value in PATTERNS.items():
        if value == pattern:
            return name
    return pattern


def make_splitter(pattern: str) -> Callable[[str], list[str]]:
    """Return a function that cuts text into pre-tokenisation chunks with ``pattern``.

    Example:
        >>> make_splitter("gpt2")("Hello world's  end")
        ['Hello', ' world', "'s", ' ', ' end']
    """
    pattern = resolve_pattern(pattern)
    slow = regex.compile(pattern).findall
    if pattern != GPT2_PATTERN:
        return slow
    fast = _GPT2_ASCII.findall

    def split(text: str) -> list[str]:
        return fast(text) if text.isascii() else slow(text)

    return split


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...) map to
    ``chr(256 + k)`` in byte order, so ``b" "`` becomes ``"Ġ"`` and ``b"\\n"`` becomes ``"Ċ"``.

    Example:
        >>> bytes_to_unicode()[ord(" ")], bytes_to_unicode()[ord("a")]
        ('Ġ', 'a')
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_bytes(token: str) -> bytes | None:
    """Bytes of a byte-level token string such as ``"Ġthe"``, or None if it is not byte-level.

    Example:
        >>> token_to_bytes("Ġthe"), token_to_bytes("<|endoftext|>"), token_to_bytes("€")
        (b' the', b'<|endoftext|>', None)
    """
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return None


def bytes_to_token(data: bytes) -> str:
    """Byte-level token string of raw bytes (inverse of :func:`token_to_bytes`)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def byte_alphabet_order() -> list[int]:
    """The 256 byte values sorted by their byte-level character, the base-id order of GPT-2 and HF.

    Example:
        >>> byte_alphabet_order()[:3], byte_alphabet_order()[188]
        ([33, 34, 35], 0)
    """
    table = bytes_to_unicode()
    return sorted(range(256), key=lambda b: table[b])
