"""Hand-written hard cases shared by the tokenizer tests (a module, since conftest is not importable)."""

from pathlib import Path

#: The shared data file, beside the repository (absent on some machines: tests skip).
SHAKESPEARE = Path(__file__).resolve().parents[2].parent / "shared/data/tinyshakespeare.txt"

#: Texts that trip tokenizers: spaces, newlines, CRLF, tabs, digits, contractions, accents, CJK, emoji, ZWJ.
HARD_CASES = [
    "",
    " ",
    "   ",
    "hello",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces   inside",
    "line\nbreak",
    "blank lines\n\n\nbetween",
    "windows\r\nline\r\nendings\r\n",
    "tabs\there\t\tand\t",
    " \t \n mixed \n\t whitespace \n",
    "digits 0 12 345 6789 3.14159 1,000,000 2024-01-01",
    "it's they're we've I'll she'd I'm don't 'S 'quoted' rock'n'roll",
    "IT'S THEY'RE",
    "café naïve résumé Ångström Zürich São Paulo ñandú",
    "e\u0301 combining acute",
    "日本語のテキストと中文文本",
    "한국어 텍스트",
    "emoji 👍 👍🏽 🎉🎉",
    "family 👨\u200d👩\u200d👧\u200d👦 and flag 🏳️\u200d🌈",
    "math ∑ ∫ √ ≠ ≤ and arrows → ← ↔",
    "punctuation!!! ??? ... --- ((( ))) [x] {y} <z>",
    "code: def f(x):\n    return x**2  # comment\n",
    "URL https://example.com/path?q=1&r=2#frag",
    "nbsp\u00a0here and\u2028line separator and \u3000 ideographic space",
    "control\x01chars\x1f and\x7f delete",
    "\ufeffbyte order mark",
    "a" * 300,
    "🙂" * 40,
    " " * 70 + "x",
    "<|endoftext|> is ordinary text here",
]
