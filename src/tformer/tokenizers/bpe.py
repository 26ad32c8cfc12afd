"""Byte-level BPE (GPT-2 style): regex pre-tokenisation, byte alphabet of 256, merges applied by rank.

The vocabulary maps token *bytes* to ids; the 256 single bytes are always present, and merge ``k`` (of
rank ``k``) joins two tokens into a token that is also in the vocabulary. Special tokens are held apart
and only recognised according to the special-token policy of :class:`~tformer.tokenizers.base.Tokenizer`.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.base import Tokenizer
from tformer.tokenizers.bpe_train import MAX_VOCAB_SIZE, ProgressFn, assign_ids, count_words, learn_merges
from tformer.tokenizers.formats import (
    byte_vocab_from_json,
    byte_vocab_to_json,
    merges_from_lines,
    merges_to_lines,
    write_gpt2_files,
)
from tformer.tokenizers.pretokenize import make_splitter, pattern_name, resolve_pattern

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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block (as :mod:`timeit` does), then restore it.

    For bulk work that allocates many long-lived objects and no reference cycles: encoding the new
    chunks of a text caches thousands of id lists, and every few hundred of them set off a collection
    that traverses all young objects, such as the caller's list of every chunk of the text (300k for
    1 MB), which costs 5-10% of a cold pass and frees nothing.

    Example:
        >>> with gc_paused():
        ...     gc.isenabled()
        False
        >>> gc.isenabled()
        True
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class MergeTree:
    """For each token id, the rank of the one merge creating it and that merge's two operands (-1 where
    no merge creates the id: bytes, special tokens, stray vocabulary entries)."""

    rank: list[int]
    left: list[int]
    right: list[int]


def merge_tree(
    ranks: dict[tuple[int, int], int], merged: Sequence[int], byte_ids: Iterable[int], size: int
) -> MergeTree:
    """The :class:`MergeTree` of ids below ``size``; all -1 if the merges do not form a tree.

    ``ranks`` maps pairs to their effective ranks, in rank order. A trained merge list is a tree: every
    token is created by one merge only, from operands created at lower ranks. The reachability test of
    :meth:`ByteLevelBPETokenizer._is_reachable` relies on that; an all -1 tree turns it off.

    Example:
        >>> merge_tree({(0, 1): 0, (2, 1): 1}, [2, 3], [0, 1], 4)
        MergeTree(rank=[-1, -1, 0, 1], left=[-1, -1, 0, 2], right=[-1, -1, 1, 1])
        >>> merge_tree({(0, 1): 0, (1, 0): 1}, [2, 2], [0, 1], 3).rank  # token 2 is made twice
        [-1, -1, -1]
    """
    tree = MergeTree([-1] * size, [-1] * size, [-1] * size)
    created = set(byte_ids)
    for (left, right), rank in ranks.items():
        new = merged[rank]
        if left not in created or right not in created or new in created:
            return MergeTree([-1] * size, [-1] * size, [-1] * size)
        created.add(new)
        tree.rank[new], tree.left[new], tree.right[new] = rank, left, right
    return tree


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

    file_type = "byte_bpe"

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
        self._byte_table = bytes(self._byte_ids) if max(self._byte_ids) < 256 else None
        self._ranks: dict[tuple[int, int], int] = {}
        self._merged: list[int] = []  # rank -> id of the token that merge creates
        for rank, (a, b) in enumerate(self.merges):
            # A repeated merge keeps its first (effective) rank.
            self._ranks.setdefault((self.vocab[a], self.vocab[b]), rank)
            self._merged.append(self.vocab[a + b])
        self._vocab_size = 1 + max([*self.vocab.values(), *self.special_tokens.values()])
        self._tree = merge_tree(self._ranks, self._merged, self._byte_ids, self._vocab_size)
        self._id_bytes: list[bytes | None] = [None] * self._vocab_size
        for token, i in self.vocab.items():
            self._id_bytes[i] = token
        self._special_ids = {i: t.encode("utf-8") for t, i in self.special_tokens.items()}
        self._split = make_splitter(self.pattern)
        self._cache: dict[str, list[int]] = {}
        self._reachable = self._no_reachability_known()

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
    def train(cls, data: Iterable[str] | str, vocab_size: int, **kwargs: Any) -> ByteLevelBPETokenizer:
        """Learn a byte-level BPE vocabulary from texts: :func:`train_bpe`, whose options it takes."""
        return train_bpe(data, vocab_size, **kwargs)

    @classmethod
    def from_config(cls, doc: dict[str, Any]) -> ByteLevelBPETokenizer:
        """Build from the fields of a tformer tokenizer file."""
        vocab = byte_vocab_from_json(doc["vocab"])
        merges = merges_from_lines(doc["merges"])
        return cls(vocab, merges, doc["special_tokens"], doc["pattern"], doc["roles"])

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (one more than the largest id)."""
        return self._vocab_size

    # ---- encoding -----------------------------------------------------------------------------------
    def _encode_ordinary(self, text: str) -> list[int]:
        chunks = self._split(text)
        cache = self._cache
        ids: list[int] = []
        extend = ids.extend
        for chunk in chunks:
            try:
                extend(cache[chunk])
            except KeyError:
                self._cache_new_chunks(chunks)
                extend(cache[chunk])
        return ids

    def _cache_new_chunks(self, chunks: list[str]) -> None:
        """Encode and cache every distinct chunk of ``chunks`` not cached yet.

        All at once rather than one at a time inside the look-up loop, which keeps the merge tables hot
        in the CPU cache (5-10% of a cold pass), and with the garbage collector paused (see
        :func:`gc_paused`).
        """
        cache = self._cache
        new = set(chunks).difference(cache)
        if len(cache) + len(new) > _CACHE_LIMIT:
            cache.clear()  # bounds memory; a text with more distinct chunks than that overfills it once
            new = set(chunks)
        encode_chunk = self._encode_chunk
        with gc_paused():
            for chunk in new:
                cache[chunk] = encode_chunk(chunk)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Ids of one pre-tokenised chunk: its bytes, then merges by rank, lowest first.

        A chunk that is itself a token which BPE reaches (half of the distinct chunks of English text)
        skips the merge loop, as in tiktoken; checking reachability keeps that exact for any vocabulary.
        Otherwise ``ranks`` holds the rank of every adjacent pair (``_NO_MERGE`` where none applies);
        after a merge only the two neighbouring entries change, and ``min``/``index``/``del`` run at C
        speed.
        """
        data = chunk.encode("utf-8")
        token = self.vocab.get(data)
        if token is not None and self._is_reachable(token):
            return [token]
        if self._byte_table is not None:  # byte ids below 256 (GPT-2, HF): translate at C speed
            parts = list(data.translate(self._byte_table))
        else:
            parts = list(map(self._byte_ids.__getitem__, data))
        if len(parts) > _LONG_CHUNK:
            return self._merge_long(parts)
        get, merged = self._ranks.get, self._merged
        ranks = list(map(get, zip(parts, parts[1:]), repeat(_NO_MERGE)))
        while ranks:
            best = min(ranks)
            if best == _NO_MERGE:
                break
            i = ranks.index(best)  # leftmost occurrence first, as GPT-2 and HF do
            new = merged[best]
            parts[i] = new
            del parts[i + 1]
            del ranks[i]
            if i < len(ranks):
                ranks[i] = get((new, parts[i + 1]), _NO_MERGE)
            if i:
                ranks[i - 1] = get((parts[i - 1], new), _NO_MERGE)
        return parts

    def _no_reachability_known(self) -> list[bool | None]:
        """The memo of :meth:`_is_reachable` (by id) before any test: only the bytes are known."""
        memo: list[bool | None] = [None] * self._vocab_size
        for b in self._byte_ids:
            memo[b] = True
        return memo

    def _is_reachable(self, token: int) -> bool:
        """Whether BPE on the bytes of ``token`` ends as the single id ``token`` (memoised per token).

        Not every vocabulary token is: a merge across the seam between the two halves that create it
        may fire first. BPE reaches ``token = left + right`` exactly when it reaches both halves on
        their own and the seam holds until then (merges are never undone, and only the merge of
        ``left`` with ``right`` makes ``token``). While the halves evolve apart, the token just left of
        the seam climbs ``left``'s right spine (the chain of right operands, from a byte up) and the
        one just right of it ``right``'s left spine; each lives from the merge creating it until the
        merge absorbing it into its parent (its ``end``). Walking both spines down from the top, always
        undoing the newer token, visits every pair that is ever adjacent across the seam; a pair
        ``(x, y)`` merges early iff its rank is below ``x``'s end and at most ``y``'s (on a tie, the
        left half's own pair lies further left and goes first; the seam goes before the right half's).

        Example:
            >>> vocab = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
            >>> tok = ByteLevelBPETokenizer(vocab, [(b"a", b"b"), (b"b", b"c"), (b"a", b"bc")])
            >>> tok._is_reachable(257), tok._is_reachable(258)  # "abc" merges "ab" first
            (True, False)
            >>> tok.encode("abc")
            [256, 99]
        """
        memo = self._reachable
        known = memo[token]
        if known is not None:
            return known
        rank_of, left_of, right_of = self._tree.rank, self._tree.left, self._tree.right
        left, right = left_of[token], right_of[token]
        known = (
            rank_of[token] >= 0
            and (memo[left] or self._is_reachable(left))
            and (memo[right] or self._is_reachable(right))
        )
        if known:
            get = self._ranks.get
            x, x_rank, x_end = left, rank_of[left], _NO_MERGE
            y, y_rank, y_end = right, rank_of[right], _NO_MERGE
            while x_rank >= 0 or y_rank >= 0:  # until both are bytes
                if x_rank > y_rank:
                    x_end, x = x_rank, right_of[x]
                    x_rank = rank_of[x]
                else:
                    y_end, y = y_rank, left_of[y]
                    y_rank = rank_of[y]
                r = get((x, y))
                if r is not None and r < x_end and r <= y_end:
                    known = False
                    break
        memo[token] = known
        return known

    def _merge_long(self, parts: list[int]) -> list[int]:
        """Same result as the rank scan, in O(n log n): a heap of (rank, position) over a linked list."""
        ranks, merged = self._ranks, self._merged
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
            sym[i] = merged[rank]
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
        """Forget the encoded chunks and the reachability memo (for cold-start measurements)."""
        self._cache.clear()
        self._reachable = self._no_reachability_known()

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

    def token_to_id(self, token: str | bytes) -> int | None:
        """Id of a special token string, or of an ordinary token given as bytes or as its text."""
        if isinstance(token, str):
            if token in self.special_tokens:
                return self.special_tokens[token]
            token = token.encode("utf-8")
        return self.vocab.get(token)

    # ---- files --------------------------------------------------------------------------------------
    def config_fields(self) -> dict[str, Any]:
        """The pattern, the byte-level vocabulary and the merges (``from_config`` reads them)."""
        return {
            "pattern": pattern_name(self.pattern),
            "vocab": byte_vocab_to_json(self.vocab),
            "merges": merges_to_lines(self.merges),
        }

    def _save_extra_files(self, directory: Path) -> None:
        """GPT-2's ``vocab.json`` / ``merges.txt`` beside tformer's file."""
        write_gpt2_files(self.vocab, self.merges, self.special_tokens, directory)


def train_bpe(
    data: Iterable[str] | str,
    vocab_size: int,
    *,
    min_frequency: int = 0,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    pattern: str = "gpt2",
    layout: Literal["gpt2", "hf"] = "gpt2",
    progress: ProgressFn | None = None,
) -> ByteLevelBPETokenizer:
    """Train a byte-level BPE tokenizer (the algorithm is in :mod:`tformer.tokenizers.bpe_train`).

    Args:
        data: texts; each is pre-tokenised on its own (to train on files as HF does, pass their lines:
            :func:`tformer.tokenizers.corpus.iter_lines`).
        vocab_size: final vocabulary size, special tokens and the 256 bytes included.
        min_frequency: a pair must occur at least this often to be merged.
        special_tokens: added with fixed ids; the first is also bos/eos when named ``<|endoftext|>``.
        pattern: ``"gpt2"`` (default), ``"cl100k"`` or a regex.
        layout: ``"gpt2"``: bytes, then merges, then special tokens (so ``<|endoftext|>`` follows the
            merges, as GPT-2's 50256 does); ``"hf"``: special tokens first (0..k-1), as HF's trainer does.
        progress: called as ``progress(done, total)`` while merging.

    Returns:
        The trained tokenizer; its merges equal HF ``tokenizers``' for the same texts and settings.

    Raises:
        ConfigError: vocab_size too small for the byte alphabet and special tokens, or a bad layout.
        DataError: no text to learn from.
    """
    if isinstance(data, str):
        data = [data]
    specials = list(dict.fromkeys(special_tokens))
    if layout not in ("gpt2", "hf"):
        raise ConfigError(f"layout must be 'gpt2' or 'hf', got {layout!r}")
    if vocab_size < 256 + len(specials):
        raise ConfigError(
            f"vocab_size {vocab_size} is smaller than the 256 byte tokens plus {len(specials)} special tokens; "
            f"use at least {256 + len(specials)}"
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise ConfigError(f"vocab_size {vocab_size} is too large (at most {MAX_VOCAB_SIZE})")
    word_counts = count_words(data, pattern)
    if not word_counts:
        raise DataError("no training text: the data is empty; give at least one non-empty text or file")
    merges = learn_merges(word_counts, vocab_size - len(specials), min_frequency, progress)
    vocab, special_ids = assign_ids(merges, specials, layout)
    return ByteLevelBPETokenizer(vocab, merges, special_ids, pattern)
