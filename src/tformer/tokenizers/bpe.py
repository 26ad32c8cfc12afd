"""Byte-level BPE (GPT-2 style): regex pre-tokenisation, byte alphabet of 256, merges applied by rank.

The vocabulary maps token *bytes* to ids; the 256 single bytes are always present, and merge ``k`` (of
rank ``k``) joins two tokens into a token that is also in the vocabulary. Special tokens are held apart
and only recognised according to the special-token policy of :class:`~tformer.tokenizers.base.Tokenizer`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.base import Tokenizer
from tformer.tokenizers.pretokenize import make_splitter, resolve_pattern
from tformer.tokenizers.stream import ByteDecodeStream

# Chunks longer than this (in bytes) use the O(n log n) heap merge instead of the O(n^2) scan.
_LONG_CHUNK = 256
_NO_MERGE = 1 << 62
_CACHE_LIMIT = 200_000


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    Example:
        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
        >>> merge([5, 5, 5], (5, 5), 6)
        [6, 5]
    """
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class ByteLevelBPETokenizer(Tokenizer):
    """GPT-2-style byte-level BPE tokenizer.

    Args:
        vocab: token bytes -> id for every ordinary token; must hold all 256 single bytes.
        merges: pairs of token bytes in rank order; each pair and its concatenation must be in ``vocab``.
        special_tokens: special token string -> id (ids distinct from ``vocab``'s).
        pattern: pre-tokenisation regex or a name, ``"gpt2"`` (default) or ``"cl100k"``.
        roles: role -> special token (``{"eos": "<|endoftext|>"}``); inferred from the names when None.

    Example:
        >>> tok = ByteLevelBPETokenizer.train(["hello hello world"], vocab_size=260)  # doctest: +SKIP
        >>> tok.decode(tok.encode("hello"))  # doctest: +SKIP
        'hello'
    """

    def __init__(
        self,
        vocab: dict[bytes, int],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: dict[str, int] | None = None,
        pattern: str = "gpt2",
        roles: dict[str, str] | None = None,
    ) -> None:
        super().__init__(special_tokens or {}, roles)
        self.pattern = resolve_pattern(pattern)
        self.vocab = dict(vocab)
        self.merges = [(bytes(a), bytes(b)) for a, b in merges]
        self._check_vocab()
        self._byte_ids = [self.vocab[bytes([b])] for b in range(256)]
        self._ranks: dict[tuple[int, int], int] = {}
        self._merge_ids: dict[tuple[int, int], int] = {}
        for rank, (a, b) in enumerate(self.merges):
            pair = (self.vocab[a], self.vocab[b])
            if pair not in self._ranks:  # a repeated merge keeps its first (effective) rank
                self._ranks[pair] = rank
                self._merge_ids[pair] = self.vocab[a + b]
        self._vocab_size = 1 + max([*self.vocab.values(), *self.special_tokens.values()])
        self._id_bytes: list[bytes | None] = [None] * self._vocab_size
        for token, i in self.vocab.items():
            self._id_bytes[i] = token
        self._special_ids = {i: t.encode("utf-8") for t, i in self.special_tokens.items()}
        self._split = make_splitter(self.pattern)
        self._cache: dict[str, list[int]] = {}

    def _check_vocab(self) -> None:
        missing = [b for b in range(256) if bytes([b]) not in self.vocab]
        if missing:
            raise ConfigError(
                f"BPE vocabulary lacks {len(missing)} of the 256 byte tokens (first: byte {missing[0]})"
            )
        ids = [*self.vocab.values(), *self.special_tokens.values()]
        if len(set(ids)) != len(ids) or min(ids) < 0:
            raise ConfigError("BPE vocabulary and special tokens must use distinct non-negative ids")
        for rank, (a, b) in enumerate(self.merges):
            for token in (a, b, a + b):
                if token not in self.vocab:
                    raise ConfigError(
                        f"merge {rank} ({a!r} + {b!r}) uses token {token!r} missing from the vocabulary"
                    )

    @classmethod
    def train(
        cls,
        data: Iterable[str] | str,
        vocab_size: int,
        *,
        min_frequency: int = 0,
        special_tokens: Sequence[str] = ("<|endoftext|>",),
        pattern: str = "gpt2",
        layout: Literal["gpt2", "hf"] = "gpt2",
        progress: Callable[[int, int], None] | None = None,
    ) -> ByteLevelBPETokenizer:
        """Learn a byte-level BPE vocabulary from texts (see :func:`tformer.tokenizers.bpe_train.train_bpe`)."""
        from tformer.tokenizers.bpe_train import train_bpe

        return train_bpe(
            data,
            vocab_size,
            min_frequency=min_frequency,
            special_tokens=special_tokens,
            pattern=pattern,
            layout=layout,
            progress=progress,
        )

    @classmethod
    def train_from_files(
        cls,
        paths: str | Path | Sequence[str | Path],
        vocab_size: int,
        *,
        errors: str = "strict",
        **kwargs: Any,
    ) -> ByteLevelBPETokenizer:
        """Train on UTF-8 text files, read line by line as HF ``tokenizers`` reads them.

        Args:
            paths: one file or several.
            vocab_size: as in :meth:`train`; other keyword arguments go to :meth:`train` too.
            errors: ``"strict"`` (invalid UTF-8 is a DataError naming the file and byte offset),
                ``"replace"`` or ``"ignore"``.
        """
        from tformer.tokenizers.io import iter_lines

        return cls.train(iter_lines(paths, errors=errors), vocab_size, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    # ---- encoding -----------------------------------------------------------------------------------
    def _encode_ordinary(self, text: str) -> list[int]:
        cache = self._cache
        ids: list[int] = []
        extend = ids.extend
        for chunk in self._split(text):
            try:
                extend(cache[chunk])
            except KeyError:
                chunk_ids = self._encode_chunk(chunk)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[chunk] = chunk_ids
                extend(chunk_ids)
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Ids of one pre-tokenised chunk: its bytes, then merges by rank, lowest first.

        ``ranks`` holds the rank of every adjacent pair (``_NO_MERGE`` where none applies); after a merge
        only the two neighbouring entries change, and ``min``/``index``/``del`` run at C speed.
        """
        parts = list(map(self._byte_ids.__getitem__, chunk.encode("utf-8")))
        if len(parts) > _LONG_CHUNK:
            return self._merge_long(parts)
        if len(parts) < 2:
            return parts
        get, merge_ids = self._ranks.get, self._merge_ids
        ranks = list(map(get, zip(parts, parts[1:]), repeat(_NO_MERGE)))
        while ranks:
            best = min(ranks)
            if best == _NO_MERGE:
                break
            i = ranks.index(best)  # leftmost occurrence first, as GPT-2 and HF do
            new = merge_ids[parts[i], parts[i + 1]]
            parts[i] = new
            del parts[i + 1]
            del ranks[i]
            if i < len(ranks):
                ranks[i] = get((new, parts[i + 1]), _NO_MERGE)
            if i:
                ranks[i - 1] = get((parts[i - 1], new), _NO_MERGE)
        return parts

    def _merge_long(self, parts: list[int]) -> list[int]:
        """Same result as the rank scan, in O(n log n): a heap of (rank, position) over a linked list."""
        ranks, merge_ids = self._ranks, self._merge_ids
        n = len(parts)
        sym = list(parts)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = [(ranks[p], i) for i, p in enumerate(zip(sym, sym[1:])) if p in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j >= n or ranks.get((sym[i], sym[j])) != rank:
                continue  # stale: a neighbour changed since this entry was pushed
            sym[i] = merge_ids[(sym[i], sym[j])]
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            for left in (prv[i], i):
                right = nxt[left] if left >= 0 else n
                if left >= 0 and right < n:
                    r = ranks.get((sym[left], sym[right]))
                    if r is not None:
                        heapq.heappush(heap, (r, left))
        return [s for s, keep in zip(sym, alive) if keep]

    def clear_cache(self) -> None:
        """Forget the encoded chunks (the cache is bounded anyway; this is for cold-start measurements)."""
        self._cache.clear()

    # ---- decoding -----------------------------------------------------------------------------------
    def _decode_bytes(self, ids: Sequence[int], skip_special_tokens: bool) -> bytes:
        table, special = self._id_bytes, self._special_ids
        out = []
        for i in ids:
            piece = table[i] if 0 <= i < len(table) else None
            if piece is None:
                if i in special:
                    if not skip_special_tokens:
                        out.append(special[i])
                    continue
                raise DataError(f"id {i} is not in the vocabulary (vocab_size {self.vocab_size})")
            out.append(piece)
        return b"".join(out)

    def id_to_bytes(self, token_id: int) -> bytes:
        """Bytes of one id (a special token's UTF-8 text for special ids)."""
        return self._decode_bytes([token_id], skip_special_tokens=False)

    def decode_stream(self, skip_special_tokens: bool = False) -> ByteDecodeStream:
        """An incremental decoder for generation (see :class:`~tformer.tokenizers.base.ByteDecodeStream`)."""
        return ByteDecodeStream(self, skip_special_tokens)

    def token_to_id(self, token: str | bytes) -> int | None:
        """Id of a special token string, or of an ordinary token given as bytes or as its text."""
        if isinstance(token, str):
            if token in self.special_tokens:
                return self.special_tokens[token]
            token = token.encode("utf-8")
        return self.vocab.get(token)

    # ---- files --------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``tformer_tokenizer.json`` (tformer's versioned format) plus GPT-2's ``vocab.json``/``merges.txt``."""
        from tformer.tokenizers import io

        return io.save_bpe(self, directory)
