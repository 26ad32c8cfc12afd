"""The surface every tformer tokenizer shares: special-token policy, sentence pairs, batching.

A subclass supplies: ``_encode_ordinary`` (text without special tokens to ids), ``_decode_bytes``
(ids to UTF-8 bytes, special tokens included), ``vocab_size``, and its file: ``file_type``, ``save`` and
``from_config``. Everything else (the
tiktoken-style special-token policy, sentence pairs, truncation, padding to tensors with attention masks,
incremental decoding for generation) is implemented once here.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import regex

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.corpus import iter_lines
from tformer.tokenizers.formats import tformer_document, write_tformer_file
from tformer.tokenizers.hf_format import write_hf_files
from tformer.tokenizers.stream import DecodeStream

SpecialSet = Literal["all"] | Collection[str]
Padding = bool | Literal["longest", "max_length", "do_not_pad"]

#: Token strings recognised for each role when no explicit roles are given.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "bos": ("<|endoftext|>", "<s>", "<bos>", "<|begin_of_text|>", "[BOS]"),
    "eos": ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[EOS]"),
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
    "unk": ("<unk>", "[UNK]", "<|unk|>"),
    "mask": ("<mask>", "[MASK]", "<|mask|>"),
    "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]", "<sep>"),
}


def infer_roles(special_tokens: Iterable[str]) -> dict[str, str]:
    """Map roles (``bos``, ``eos``, ``pad``, ...) to the special tokens conventionally playing them.

    Example:
        >>> infer_roles(["<|endoftext|>", "<pad>"])
        {'bos': '<|endoftext|>', 'eos': '<|endoftext|>', 'pad': '<pad>'}
    """
    present = set(special_tokens)
    roles = {}
    for role, names in ROLE_NAMES.items():
        for name in names:
            if name in present:
                roles[role] = name
                break
    return roles


@functools.lru_cache(maxsize=64)
def _special_regex(tokens: frozenset[str]) -> regex.Pattern:
    # Longest first, so that "<|endoftext|>" wins over a special token that is a prefix of it.
    alternatives = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("(" + "|".join(regex.escape(t) for t in alternatives) + ")")


def truncate_pair(
    first: list[int], second: list[int] | None, limit: int
) -> tuple[list[int], list[int] | None]:
    """Cut one sequence, or a pair by HF's ``longest_first`` rule, to at most ``limit`` ids in total.

    With a pair, the shorter keeps its length if the longer can absorb the cut; otherwise the shorter
    keeps ``limit // 2`` and the longer the rest.

    Example:
        >>> truncate_pair([1, 2, 3, 4, 5, 6], [7, 8], 5)
        ([1, 2, 3], [7, 8])
        >>> truncate_pair([1, 2, 3, 4], [5, 6, 7, 8], 5)
        ([1, 2], [5, 6, 7])
    """
    limit = max(limit, 0)
    if second is None:
        return first[:limit], None
    if len(first) + len(second) <= limit:
        return first, second
    n_short, n_long = sorted((len(first), len(second)))
    n_long = n_short if n_short > limit else max(n_short, limit - n_short)
    if n_short + n_long > limit:
        n_short = limit // 2
        n_long = n_short + limit % 2
    n_first, n_second = (n_long, n_short) if len(first) > len(second) else (n_short, n_long)
    return first[:n_first], second[:n_second]


class Tokenizer(ABC):
    """Base class: text to ids and back, with an explicit special-token policy.

    Attributes:
        special_tokens: special token string -> id.
        bos_token_id, eos_token_id, pad_token_id, unk_token_id, mask_token_id, cls_token_id,
            sep_token_id: ids of the special tokens playing these roles, None where undefined. They are
            plain attributes: ``tok.pad_token_id = tok.eos_token_id`` is the usual fix for GPT-2 padding.
        padding_side, truncation_side: ``"right"`` (default) or ``"left"``.
    """

    #: Whether ``encode_batch`` returns ``token_type_ids`` (sentence-pair models such as BERT).
    returns_token_type_ids = False
    #: The ``"type"`` of this tokenizer in tformer's tokenizer file (``tformer.tokenizers.formats``).
    file_type: ClassVar[str]

    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    unk_token_id: int | None
    mask_token_id: int | None
    cls_token_id: int | None
    sep_token_id: int | None

    def __init__(self, special_tokens: dict[str, int], roles: dict[str, str] | None = None) -> None:
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self.roles: dict[str, str] = infer_roles(special_tokens) if roles is None else dict(roles)
        for role, token in self.roles.items():
            if token not in self.special_tokens:
                raise ConfigError(f"the {role} token {token!r} is not one of the special tokens")
        for role in ROLE_NAMES:
            token = self.roles.get(role)
            setattr(self, f"{role}_token_id", None if token is None else self.special_tokens[token])
        self.padding_side: Literal["left", "right"] = "right"
        self.truncation_side: Literal["left", "right"] = "right"

    # ---- what a subclass provides -------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (one more than the largest id)."""

    @abstractmethod
    def _encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text``, treating any special-token string in it as ordinary text."""

    @abstractmethod
    def _decode_bytes(self, ids: Sequence[int], skip_special_tokens: bool) -> bytes:
        """UTF-8 bytes of ``ids``; raise DataError for an id outside the vocabulary."""

    @abstractmethod
    def config_fields(self) -> dict[str, Any]:
        """The fields of this tokenizer's type in tformer's tokenizer file (what ``from_config`` reads)."""

    @classmethod
    def train_from_files(
        cls, paths: str | Path | Sequence[str | Path], *args: Any, errors: str = "strict", **kwargs: Any
    ) -> Tokenizer:
        """Train on UTF-8 text files, read line by line as HF ``tokenizers`` reads them: ``cls.train`` on
        their lines, with its other arguments (``vocab_size``, ...).

        Args:
            paths: one file or several.
            errors: ``"strict"`` (invalid UTF-8 is a DataError naming the file and byte offset),
                ``"replace"`` or ``"ignore"``.
        """
        return cls.train(iter_lines(paths, errors=errors), *args, **kwargs)  # type: ignore[attr-defined]

    @classmethod
    @abstractmethod
    def from_config(cls, doc: dict[str, Any]) -> Tokenizer:
        """Build from the document of a tformer tokenizer file (what ``save`` wrote)."""

    # ---- encoding -----------------------------------------------------------------------------------
    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` with special-token strings encoded as plain text (never raises on a str)."""
        if not isinstance(text, str):
            raise DataError(f"encode expects a str, got {type(text).__name__}")
        return self._encode_ordinary(text)

    def encode_text(
        self, text: str, allowed_special: SpecialSet = (), disallowed_special: SpecialSet = "all"
    ) -> list[int]:
        """Ids of ``text`` alone (no framing tokens), applying the special-token policy of :meth:`encode`."""
        if not isinstance(text, str):
            raise DataError(f"encode expects a str, got {type(text).__name__}")
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ConfigError(f"allowed_special names unknown special tokens {sorted(unknown)}")
        disallowed = (
            set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        )
        for token in disallowed:
            if token in text:
                raise DataError(
                    f"text contains the special token {token!r}; pass allowed_special={{{token!r}}} (or 'all') "
                    "to encode it as a special token, or disallowed_special=() to encode it as text"
                )
        present = [t for t in allowed if t in text]
        if not present:
            return self._encode_ordinary(text)
        ids: list[int] = []
        for i, piece in enumerate(_special_regex(frozenset(present)).split(text)):
            if i % 2:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self._encode_ordinary(piece))
        return ids

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        allowed_special: SpecialSet = (),
        disallowed_special: SpecialSet = "all",
    ) -> list[int]:
        """Encode ``text`` (and optionally ``text_pair``) to ids.

        The policy follows tiktoken: a special-token string found in the text raises DataError unless it
        is in ``allowed_special`` (then it becomes its id) or left out of ``disallowed_special`` (then
        it is encoded as ordinary text).

        Args:
            text: the text.
            text_pair: a second text for sentence-pair models (BERT frames it with [SEP]).
            add_special_tokens: frame with the model's tokens (BERT's [CLS]/[SEP]; nothing for GPT-2).
            allowed_special: special tokens to recognise in the text, or ``"all"``.
            disallowed_special: special tokens whose presence is an error, ``"all"`` (the default) meaning
                every special token not allowed.

        Returns:
            The list of ids.
        """
        first = self.encode_text(text, allowed_special, disallowed_special)
        second = (
            None if text_pair is None else self.encode_text(text_pair, allowed_special, disallowed_special)
        )
        return self._frame(first, second, add_special_tokens)[0]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """Number of framing ids :meth:`encode` adds around one text (or a pair)."""
        return len(self._frame([], [] if pair else None, True)[0])

    def _frame(
        self, first: list[int], second: list[int] | None, add_special_tokens: bool
    ) -> tuple[list[int], list[int]]:
        """Join a text (or pair) into model inputs; returns ``(ids, token_type_ids)``. No framing here."""
        second = second or []
        return first + second, [0] * len(first) + [1] * len(second)

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: Padding = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: Literal["pt"] | None = None,
        allowed_special: SpecialSet = (),
        disallowed_special: SpecialSet = "all",
    ) -> dict[str, Any]:
        """Encode many texts, with optional truncation and padding.

        Args:
            texts: the texts.
            text_pairs: second texts, one per text (sentence pairs).
            add_special_tokens: as in :meth:`encode`.
            padding: False / ``"do_not_pad"``; True / ``"longest"`` pads to the longest row;
                ``"max_length"`` pads to ``max_length``. Pads on ``self.padding_side``.
            truncation: cut rows to ``max_length`` (framing tokens kept; pairs by ``longest_first``),
                from ``self.truncation_side``.
            max_length: the length limit for truncation and ``"max_length"`` padding.
            return_tensors: ``"pt"`` for int64 tensors of shape (B, T), None for lists.
            allowed_special, disallowed_special: as in :meth:`encode`.

        Returns:
            ``{"input_ids", "attention_mask"}`` (plus ``"token_type_ids"`` for pair models); the mask is 1
            on real tokens and 0 on padding.
        """
        if isinstance(texts, str):
            raise DataError("encode_batch takes a list of strings; use encode() for a single string")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise DataError(
                f"got {len(texts)} texts but {len(text_pairs)} text_pairs; give one pair per text"
            )
        if (truncation or padding == "max_length") and max_length is None:
            raise ConfigError("truncation and padding='max_length' need max_length=N")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ConfigError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        ids_rows, type_rows = [], []
        for i, text in enumerate(texts):
            first = self.encode_text(text, allowed_special, disallowed_special)
            second = None
            if text_pairs is not None:
                second = self.encode_text(text_pairs[i], allowed_special, disallowed_special)
            if truncation:
                assert max_length is not None
                limit = max_length - (
                    self.num_special_tokens_to_add(second is not None) if add_special_tokens else 0
                )
                first, second = self._truncate(first, second, limit)
            ids, types = self._frame(first, second, add_special_tokens)
            ids_rows.append(ids)
            type_rows.append(types)
        masks = [[1] * len(row) for row in ids_rows]
        if padding in (True, "longest", "max_length"):
            target = max_length if padding == "max_length" else max((len(r) for r in ids_rows), default=0)
            assert target is not None
            ids_rows = self._pad(ids_rows, target, self._pad_id())
            type_rows = self._pad(type_rows, target, 0)
            masks = self._pad(masks, target, 0)
        out: dict[str, Any] = {"input_ids": ids_rows, "attention_mask": masks}
        if self.returns_token_type_ids:
            out["token_type_ids"] = type_rows
        if return_tensors == "pt":
            return _to_tensors(out)
        if return_tensors is not None:
            raise ConfigError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        return out

    def _truncate(
        self, first: list[int], second: list[int] | None, limit: int
    ) -> tuple[list[int], list[int] | None]:
        if self.truncation_side == "left":
            rev_first, rev_second = truncate_pair(
                first[::-1], None if second is None else second[::-1], limit
            )
            return rev_first[::-1], None if rev_second is None else rev_second[::-1]
        return truncate_pair(first, second, limit)

    def _pad_id(self) -> int:
        if self.pad_token_id is None:
            raise ConfigError(
                "padding needs a pad token but this tokenizer has none; set tokenizer.pad_token_id "
                "(e.g. = tokenizer.eos_token_id; the attention mask hides it)"
            )
        return self.pad_token_id

    def _pad(self, rows: list[list[int]], target: int, value: int) -> list[list[int]]:
        if self.padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.padding_side == "left":
            return [[value] * (target - len(r)) + r for r in rows]
        return [r + [value] * (target - len(r)) for r in rows]

    # ---- decoding -----------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``. Byte sequences that are not valid UTF-8 (possible when a multi-byte character
        is split across ids, or for arbitrary id lists) decode to U+FFFD replacement characters, as
        ``bytes.decode(errors="replace")`` does; decoding never fails on ids inside the vocabulary."""
        return self._decode_bytes(as_id_list(ids), skip_special_tokens).decode("utf-8", errors="replace")

    def decode_batch(
        self, rows: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = False
    ) -> list[str]:
        """Decode each row of a batch (a list of id lists or a 2-D tensor)."""
        if hasattr(rows, "tolist"):
            rows = rows.tolist()
        return [self.decode(row, skip_special_tokens) for row in rows]

    def decode_stream(self, skip_special_tokens: bool = False) -> DecodeStream:
        """An incremental decoder for generation: feed ids one by one, get only new complete text.

        Example:
            >>> stream = tok.decode_stream()  # doctest: +SKIP
            >>> for token_id in generated:  # doctest: +SKIP
            ...     print(stream.step(token_id), end="", flush=True)
            >>> print(stream.flush())  # doctest: +SKIP
        """
        return DecodeStream(self, skip_special_tokens)

    # ---- files --------------------------------------------------------------------------------------
    def save(self, directory: str | Path, format: Literal["tformer", "hf"] = "tformer") -> Path:
        """Write the tokenizer to ``directory`` (created if missing) so that ``load_tokenizer`` reads it back.

        Args:
            directory: where to write.
            format: ``"tformer"``: ``tformer_tokenizer.json`` (tformer's versioned format, everything kept)
                plus the classic files other tools read (GPT-2's ``vocab.json`` / ``merges.txt``, BERT's
                ``vocab.txt``); ``"hf"``: Hugging Face's ``tokenizer.json`` and ``tokenizer_config.json``,
                which ``tokenizers.Tokenizer.from_file`` and ``transformers.AutoTokenizer`` load
                (:mod:`tformer.tokenizers.hf_format` says what that format can hold).

        Returns:
            The directory.
        """
        if format == "hf":
            return write_hf_files(tformer_document(self), directory)
        if format != "tformer":
            raise ConfigError(f"unknown tokenizer format {format!r}; choose 'tformer' or 'hf'")
        out = write_tformer_file(self, directory)
        self._save_extra_files(out)
        return out

    def _save_extra_files(self, directory: Path) -> None:  # noqa: B027 (a hook: most types have none)
        """Files beside tformer's own that other tools read (none by default)."""

    def token_to_id(self, token: str) -> int | None:
        """Id of a special token string (subclasses also look up ordinary tokens)."""
        return self.special_tokens.get(token)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


def as_id_list(ids: Any) -> list[int]:
    """Turn a list/tuple/1-D tensor/array of ids into a list of ints, with a clear error otherwise."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        ids = [ids]
    try:
        return [int(i) for i in ids]
    except TypeError as e:
        raise DataError("decode takes a flat sequence of ids; use decode_batch for a batch") from e


def _to_tensors(batch: dict[str, list[list[int]]]) -> dict[str, Any]:
    import torch

    lengths = {len(row) for row in batch["input_ids"]}
    if len(lengths) > 1:
        raise ConfigError("rows have different lengths; pass padding=True to get tensors")
    return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}
