"""Character-level tokenizer (the classic char-level Shakespeare language model): one id per code point.

Ids ``0..n-1`` are the corpus characters in sorted order (so tinyshakespeare gives the familiar 65), then
the special tokens. A character outside the vocabulary follows the ``unknown`` policy: ``"error"`` (a
DataError naming the character and its position), ``"replace"`` (the ``unk_token`` id, added as a special
token) or ``"skip"`` (dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.base import Tokenizer, as_id_list

UnknownPolicy = Literal["error", "replace", "skip"]


class CharTokenizer(Tokenizer):
    """One token per character.

    Args:
        chars: the characters, in id order (each a single code point, no repeats).
        special_tokens: special token strings, given ids after the characters.
        unknown: policy for characters outside ``chars``: ``"error"``, ``"replace"`` or ``"skip"``.
        unk_token: the token standing for unknown characters under ``"replace"`` (added if missing).
        roles: role -> special token; inferred from the names when None.

    Example:
        >>> tok = CharTokenizer.train(["hello"])
        >>> tok.encode("hole"), tok.vocab_size
        ([1, 3, 2, 0], 4)
    """

    file_type = "char"

    def __init__(
        self,
        chars: Sequence[str],
        special_tokens: Sequence[str] = (),
        unknown: UnknownPolicy = "error",
        unk_token: str = "<unk>",
        roles: dict[str, str] | None = None,
    ) -> None:
        if unknown not in ("error", "replace", "skip"):
            raise ConfigError(f"unknown must be 'error', 'replace' or 'skip', got {unknown!r}")
        chars = list(chars)
        bad = [c for c in chars if len(c) != 1]
        if bad or len(set(chars)) != len(chars):
            raise ConfigError("CharTokenizer chars must be distinct single characters")
        specials = list(dict.fromkeys(special_tokens))
        if unknown == "replace" and unk_token not in specials:
            specials.append(unk_token)
        super().__init__({t: len(chars) + k for k, t in enumerate(specials)}, roles)
        self.chars = chars
        self.unknown: UnknownPolicy = unknown
        self.unk_token = unk_token
        self._char_ids = {c: i for i, c in enumerate(chars)}
        self._tokens = chars + specials

    @classmethod
    def train(
        cls,
        data: Iterable[str] | str,
        special_tokens: Sequence[str] = (),
        unknown: UnknownPolicy = "error",
        unk_token: str = "<unk>",
    ) -> CharTokenizer:
        """Build the vocabulary from the distinct characters of the texts.

        Raises:
            DataError: the data holds no characters.
        """
        if isinstance(data, str):
            data = [data]
        chars: set[str] = set()
        for text in data:
            chars.update(text)
        if not chars:
            raise DataError("no training text: the data is empty; give at least one non-empty text or file")
        return cls(sorted(chars), special_tokens, unknown, unk_token)

    @classmethod
    def from_config(cls, doc: dict[str, Any]) -> CharTokenizer:
        """Build from the fields of a tformer tokenizer file."""
        specials = sorted(doc["special_tokens"], key=doc["special_tokens"].get)
        return cls(doc["chars"], specials, doc["unknown"], doc["unk_token"], doc["roles"])

    @property
    def vocab_size(self) -> int:
        """Number of ids: the characters plus the special tokens."""
        return len(self._tokens)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids = self._char_ids
        try:
            return [ids[c] for c in text]
        except KeyError:
            pass
        if self.unknown == "skip":
            return [ids[c] for c in text if c in ids]
        if self.unknown == "replace":
            unk = self.special_tokens[self.unk_token]
            return [ids.get(c, unk) for c in text]
        pos = next(i for i, c in enumerate(text) if c not in ids)
        raise DataError(
            f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos} is not in the vocabulary; "
            "use unknown='replace' or 'skip', or retrain on text that contains it"
        )

    def _decode_bytes(self, ids: Sequence[int], skip_special_tokens: bool) -> bytes:
        return self.decode(ids, skip_special_tokens).encode("utf-8")

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Characters of ``ids``; special tokens appear as their text unless skipped."""
        tokens, n_chars = self._tokens, len(self.chars)
        out = []
        for i in as_id_list(ids):
            if not 0 <= i < len(tokens):
                raise DataError(f"id {i} is not in the vocabulary (vocab_size {self.vocab_size})")
            if i >= n_chars and skip_special_tokens:
                continue
            out.append(tokens[i])
        return "".join(out)

    def token_to_id(self, token: str) -> int | None:
        """Id of a character or special token."""
        return self._char_ids.get(token, self.special_tokens.get(token))

    def config_fields(self) -> dict[str, Any]:
        """The characters and the unknown-character policy (``from_config`` reads them)."""
        return {"chars": self.chars, "unknown": self.unknown, "unk_token": self.unk_token}
