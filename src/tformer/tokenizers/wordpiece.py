"""WordPiece (BERT): BERT's normaliser and pre-tokeniser, then greedy longest-match-first sub-words.

Matches HF ``tokenizers``' BertNormalizer + BertPreTokenizer + WordPiece, which HF ``transformers``'
BertTokenizer runs: control characters removed, every White_Space character a separator, CJK ideographs
split into single characters, accents stripped (NFD, drop Mn) when lower-casing unless told otherwise,
per-character lower-casing, punctuation split off, and words whose pieces cannot all be found (or longer
than ``max_input_chars_per_word``) become ``[UNK]``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.base import Tokenizer, as_id_list, infer_roles
from tformer.tokenizers.bpe_train import ProgressFn
from tformer.tokenizers.formats import (
    read_vocab_txt,
    read_wordpiece_settings,
    write_vocab_txt,
)
from tformer.tokenizers.wordpiece_train import count_words, learn_vocab

#: Characters with the Unicode White_Space property (what Rust's ``char::is_whitespace`` accepts).
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
#: BERT's default special tokens, in the order they are looked for in a vocabulary.
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a CJK ideograph from the blocks BERT splits into single characters.

    Example:
        >>> is_cjk("中"), is_cjk("あ")
        (True, False)
    """
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_control(ch: str) -> bool:
    """Whether ``ch`` is removed by BERT's cleaning (Unicode category C*, except tab/newline/CR)."""
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def is_punctuation(ch: str) -> bool:
    """BERT punctuation: any ASCII symbol (``$``, ``^``, ... too) or a Unicode P* character.

    Example:
        >>> is_punctuation("$"), is_punctuation("¿"), is_punctuation("a")
        (True, True, False)
    """
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalize(
    text: str,
    *,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
) -> str:
    """BERT normalisation: clean, space out CJK, strip accents, lower-case (HF's order).

    Example:
        >>> normalize("Héllo\\tWörld\\x00中文")
        'hello world 中  文 '
    """
    out = []
    for ch in text:
        if ch == "\x00" or ch == "\ufffd" or is_control(ch):
            continue
        if ch in WHITESPACE:
            out.append(" ")
        elif tokenize_chinese_chars and is_cjk(ch):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = "".join(out)
    if lowercase if strip_accents is None else strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    if lowercase:
        # Per character, as Rust's char::to_lowercase: no final-sigma rule, unlike str.lower().
        text = "".join(c.lower() for c in text)
    return text


def pre_tokenize(text: str) -> list[str]:
    """Split on whitespace (dropped) and punctuation (kept as one-character words).

    Example:
        >>> pre_tokenize("don't stop, ok?")
        ['don', "'", 't', 'stop', ',', 'ok', '?']
    """
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch in WHITESPACE or is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if ch not in WHITESPACE:
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece tokenizer.

    Args:
        vocab: token -> id, or the tokens in id order (the lines of ``vocab.txt``).
        lowercase: lower-case the text (BERT uncased).
        strip_accents: strip accents; None means "when lower-casing", as in BERT.
        tokenize_chinese_chars: split CJK ideographs into single characters.
        unk_token: the unknown token; must be in the vocabulary.
        continuing_prefix: the prefix marking a piece inside a word.
        max_input_chars_per_word: longer words become ``unk_token``.
        special_tokens: special token strings (default: those of BERT's five present in the vocabulary).
        roles: role -> special token; inferred from the names when None.
    """

    returns_token_type_ids = True
    file_type = "wordpiece"

    def __init__(
        self,
        vocab: dict[str, int] | Sequence[str],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        continuing_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        special_tokens: Sequence[str] | None = None,
        roles: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(vocab, dict):
            vocab = {token: i for i, token in enumerate(vocab)}
        if not vocab:
            raise ConfigError("WordPiece vocabulary is empty")
        if unk_token not in vocab:
            raise ConfigError(
                f"the unknown token {unk_token!r} is not in the vocabulary; add it or set unk_token"
            )
        if special_tokens is None:
            special_tokens = [t for t in BERT_SPECIALS if t in vocab]
        missing = [t for t in special_tokens if t not in vocab]
        if missing:
            raise ConfigError(f"special tokens {missing} are not in the WordPiece vocabulary")
        super().__init__({t: vocab[t] for t in special_tokens}, roles)
        self.vocab = dict(vocab)
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.unk_token = unk_token
        self.continuing_prefix = continuing_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self._unk_id = vocab[unk_token]
        self._id_to_token: dict[int, str] = {i: t for t, i in vocab.items()}
        self._vocab_size = 1 + max(vocab.values())
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, data: Iterable[str] | str, vocab_size: int, **kwargs: Any) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary from texts: :func:`train_wordpiece`, whose options it takes."""
        return train_wordpiece(data, vocab_size, **kwargs)

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs: Any) -> WordPieceTokenizer:
        """Read ``vocab.txt`` (one token per line, id = line number); settings from keyword arguments, or
        from ``do_lower_case``/``strip_accents``/``tokenize_chinese_chars`` in a ``tokenizer_config.json``
        beside it."""
        path = Path(path)
        vocab = read_vocab_txt(path)
        kwargs = {**read_wordpiece_settings(path.parent), **kwargs}  # explicit arguments win
        try:
            return cls(vocab, **kwargs)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_config(cls, doc: dict[str, Any]) -> WordPieceTokenizer:
        """Build from the fields of a tformer tokenizer file."""
        return cls(
            doc["vocab"],
            lowercase=doc["lowercase"],
            strip_accents=doc["strip_accents"],
            tokenize_chinese_chars=doc["tokenize_chinese_chars"],
            unk_token=doc["unk_token"],
            continuing_prefix=doc["continuing_prefix"],
            max_input_chars_per_word=doc["max_input_chars_per_word"],
            special_tokens=list(doc["special_tokens"]),
            roles=doc["roles"],
        )

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (one more than the largest id)."""
        return self._vocab_size

    # ---- encoding -----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The WordPiece token strings of ``text`` (no special-token handling, no framing)."""
        return [self._id_to_token[i] for i in self._encode_ordinary(text)]

    def _encode_ordinary(self, text: str) -> list[int]:
        text = normalize(
            text,
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            tokenize_chinese_chars=self.tokenize_chinese_chars,
        )
        ids: list[int] = []
        cache = self._cache
        for word in pre_tokenize(text):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._word_ids(word)
                if len(cache) > 100_000:
                    cache.clear()
                cache[word] = pieces
            ids.extend(pieces)
        return ids

    def _word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one word, or ``[unk]`` if a part has no match.

        Example (vocab with "un", "##aff", "##able"): ``"unaffable"`` -> ids of ``un ##aff ##able``.
        """
        if len(word) > self.max_input_chars_per_word:
            return [self._unk_id]
        vocab, prefix = self.vocab, self.continuing_prefix
        ids = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else prefix + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self._unk_id]
            start = end
        return ids

    def _frame(
        self, first: list[int], second: list[int] | None, add_special_tokens: bool
    ) -> tuple[list[int], list[int]]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``, with token types 0 for A's part, 1 for B's."""
        if not add_special_tokens:
            return super()._frame(first, second, add_special_tokens)
        if self.cls_token_id is None or self.sep_token_id is None:
            raise ConfigError(
                "framing needs [CLS] and [SEP] in the vocabulary; pass add_special_tokens=False"
            )
        cls, sep = self.cls_token_id, self.sep_token_id
        ids = [cls, *first, sep]
        types = [0] * len(ids)
        if second is not None:
            ids += [*second, sep]
            types += [1] * (len(second) + 1)
        return ids, types

    # ---- decoding -----------------------------------------------------------------------------------
    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Tokens joined by spaces, with ``##`` continuations glued to the piece before them."""
        special = set(self.special_tokens.values())
        words: list[str] = []
        for i in as_id_list(ids):
            token = self._id_to_token.get(i)
            if token is None:
                raise DataError(f"id {i} is not in the vocabulary (vocab_size {self.vocab_size})")
            if skip_special_tokens and i in special:
                continue
            if words and token.startswith(self.continuing_prefix) and i not in special:
                words[-1] += token[len(self.continuing_prefix) :]
            else:
                words.append(token)
        return " ".join(words)

    def _decode_bytes(self, ids: Sequence[int], skip_special_tokens: bool) -> bytes:
        return self.decode(ids, skip_special_tokens).encode("utf-8")

    def token_to_id(self, token: str) -> int | None:
        """Id of a token string (``"##ing"`` for a continuation piece)."""
        return self.vocab.get(token)

    def id_to_token(self, token_id: int) -> str:
        """Token string of an id."""
        return self._id_to_token[token_id]

    # ---- files --------------------------------------------------------------------------------------
    def _tokens(self) -> list[str]:
        """The tokens in id order ("" for an id no token has)."""
        return [self._id_to_token.get(i, "") for i in range(self.vocab_size)]

    def config_fields(self) -> dict[str, Any]:
        """The vocabulary and the normaliser and WordPiece settings (``from_config`` reads them)."""
        return {
            "vocab": self._tokens(),
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "unk_token": self.unk_token,
            "continuing_prefix": self.continuing_prefix,
            "max_input_chars_per_word": self.max_input_chars_per_word,
        }

    def _save_extra_files(self, directory: Path) -> None:
        """BERT's ``vocab.txt`` beside tformer's file."""
        write_vocab_txt(self._tokens(), directory)


def train_wordpiece(
    data: Iterable[str] | str,
    vocab_size: int,
    *,
    min_frequency: int = 0,
    special_tokens: Sequence[str] = BERT_SPECIALS,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    limit_alphabet: int | None = None,
    continuing_prefix: str = "##",
    progress: ProgressFn | None = None,
) -> WordPieceTokenizer:
    """Train a WordPiece tokenizer as Hugging Face's WordPieceTrainer does (see
    :mod:`tformer.tokenizers.wordpiece_train`, which also says where the two can differ).

    Args:
        data: texts; each is normalised and pre-tokenised on its own (for files, pass their lines:
            :func:`tformer.tokenizers.corpus.iter_lines`).
        vocab_size: final vocabulary size, special tokens included.
        min_frequency: a pair must occur at least this often to be merged.
        special_tokens: ids 0..k-1; one must be an unknown token (``[UNK]``, ``<unk>``).
        lowercase, strip_accents, tokenize_chinese_chars: BERT's normaliser settings (see
            :class:`WordPieceTokenizer`), used for training and kept by the tokenizer.
        limit_alphabet: keep only this many characters, the most frequent.
        continuing_prefix: marks a piece that continues a word.
        progress: called as ``progress(done, total)`` while merging.

    Raises:
        ConfigError: no unknown token among ``special_tokens``.
        DataError: no text to learn from.
    """
    if isinstance(data, str):
        data = [data]
    specials = list(dict.fromkeys(special_tokens))
    unk = infer_roles(specials).get("unk")
    if unk is None:
        raise ConfigError(
            f"special_tokens {specials} hold no unknown token; add '[UNK]' (WordPiece needs one)"
        )
    settings = dict(
        lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=tokenize_chinese_chars
    )
    counts = count_words(data, lambda text: pre_tokenize(normalize(text, **settings)))
    if not counts:
        raise DataError("no training text: the data is empty; give at least one non-empty text or file")
    vocab = learn_vocab(
        counts,
        vocab_size,
        specials,
        min_frequency=min_frequency,
        limit_alphabet=limit_alphabet,
        prefix=continuing_prefix,
        progress=progress,
    )
    return WordPieceTokenizer(
        vocab, unk_token=unk, continuing_prefix=continuing_prefix, special_tokens=specials, **settings
    )
