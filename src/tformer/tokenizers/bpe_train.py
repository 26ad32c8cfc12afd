"""Learning byte-level BPE merges, merge for merge identical to Hugging Face ``tokenizers``' BpeTrainer.

The entry point is :func:`tformer.tokenizers.bpe.train_bpe`; this module holds the algorithm and knows no
tokenizer class. Its merge loop (:func:`merge_pairs`) works on any initial symbols: WordPiece training
(:mod:`tformer.tokenizers.wordpiece_train`) runs it on characters, as Hugging Face's trainer does.

The loop never recounts the corpus. Words (pre-tokenised chunks) are counted once; pair counts are kept in
a dict and updated from the few words each merge touches, found through an index from pair to words; the
best pair comes from a max-heap with lazy invalidation (an entry whose count is stale is re-pushed with
the current count when it surfaces).

Determinism follows HF exactly:
    * ids during training are the 256 byte-level characters sorted by code point, then merges in order
      (special tokens, which HF numbers first, never take part in pairs, so they do not change the order);
    * the best pair has the highest count; ties go to the smallest ``(left id, right id)``;
    * a heap entry carries the set of words where the pair was seen when it was pushed, and a merge
      rewrites only those words, as HF does;
    * training stops when the vocabulary (special tokens included) reaches ``vocab_size``, when no pair
      is left, or when the best count is below ``min_frequency``; a merge whose result already exists
      (the same bytes reached by another pair) keeps the existing id and does not grow the vocabulary.
"""

from __future__ import annotations

import heapq
import operator
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TypeVar

from tformer.tokenizers.pretokenize import byte_alphabet_order, make_splitter

_SHIFT = 24  # pair key = left << 24 | right; key order equals (left, right) order
_MASK = (1 << _SHIFT) - 1
MAX_VOCAB_SIZE = _MASK  # ids must fit in the right half of a pair key

ProgressFn = Callable[[int, int], None]
T = TypeVar("T", bytes, str)


def count_words(data: Iterable[str], pattern: str = "gpt2") -> Counter[str]:
    """Count the pre-tokenised chunks of every text in ``data`` (each text is split on its own).

    Example:
        >>> count_words(["the cat", "the dog"])
        Counter({'the': 2, ' cat': 1, ' dog': 1})
    """
    split = make_splitter(pattern)
    counts: Counter[str] = Counter()
    for text in data:
        counts.update(split(text))
    return counts


def learn_merges(
    word_counts: dict[str, int],
    max_tokens: int,
    min_frequency: int = 0,
    progress: ProgressFn | None = None,
) -> list[tuple[bytes, bytes]]:
    """Learn merges until ``max_tokens`` ordinary tokens (256 bytes + distinct merge results) exist.

    Args:
        word_counts: pre-tokenised chunk -> count.
        max_tokens: size of the ordinary vocabulary to reach (``vocab_size`` minus special tokens).
        min_frequency: stop when the best pair occurs fewer times.
        progress: called as ``progress(tokens_so_far, max_tokens)`` after each merge.

    Returns:
        The merges, as pairs of token bytes, in rank order.

    Example:
        >>> learn_merges({"aaab": 2, "ab": 1}, 258)
        [(b'a', b'a'), (b'a', b'b')]
    """
    alphabet = byte_alphabet_order()
    byte_to_id = {b: i for i, b in enumerate(alphabet)}
    tokens = [bytes([b]) for b in alphabet]
    words = [[byte_to_id[b] for b in w.encode("utf-8")] for w in word_counts]
    pairs = merge_pairs(
        words, list(word_counts.values()), tokens, max_tokens, min_frequency, progress=progress
    )
    return [(tokens[left], tokens[right]) for left, right in pairs]


def merge_pairs(
    words: list[list[int]],
    counts: list[int],
    tokens: list[T],
    max_tokens: int,
    min_frequency: int = 0,
    join: Callable[[T, T], T] = operator.add,
    progress: ProgressFn | None = None,
) -> list[tuple[int, int]]:
    """The merge loop over words as token ids: merge the most frequent adjacent pair until ``tokens`` (id ->
    token, extended in place with each new merge result ``join(left, right)``) has ``max_tokens`` entries.

    Byte-level BPE starts from the 256 bytes; WordPiece from its special tokens, characters and ``##``
    characters. Returns the merged pairs of ids in rank order.

    Example:
        >>> tokens = ["a", "b"]
        >>> merge_pairs([[0, 0, 1], [0, 1]], [2, 1], tokens, 4), tokens
        ([(0, 1), (0, 2)], ['a', 'b', 'ab', 'aab'])
    """
    token_ids = {t: i for i, t in enumerate(tokens)}
    pair_counts: dict[int, int] = defaultdict(int)
    where: dict[int, set[int]] = defaultdict(set)
    for i, (word, count) in enumerate(zip(words, counts)):
        for left, right in zip(word, word[1:]):
            key = left << _SHIFT | right
            pair_counts[key] += count
            where[key].add(i)
    seq = 0  # unique tie-breaker so that heap entries never compare their sets
    heap = []
    for key, positions in where.items():
        heap.append((-pair_counts[key], key, seq, positions))
        seq += 1
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(tokens) < max_tokens and heap:
        neg_count, key, _, positions = heapq.heappop(heap)
        count = pair_counts[key]
        if -neg_count != count:
            heapq.heappush(heap, (-count, key, seq, positions))
            seq += 1
            continue
        if count < 1 or count < min_frequency:
            break
        left, right = key >> _SHIFT, key & _MASK
        new_token = join(tokens[left], tokens[right])
        new_id = token_ids.get(new_token)
        if new_id is None:
            new_id = len(tokens)
            tokens.append(new_token)
            token_ids[new_token] = new_id
        merges.append((left, right))
        created = _apply_merge(words, counts, positions, left, right, new_id, pair_counts)
        for new_key, new_positions in created.items():
            if pair_counts[new_key] > 0:
                heapq.heappush(heap, (-pair_counts[new_key], new_key, seq, new_positions))
                seq += 1
        if progress is not None:
            progress(len(tokens), max_tokens)
    return merges


def _apply_merge(
    words: list[list[int]],
    counts: list[int],
    positions: Iterable[int],
    left: int,
    right: int,
    new_id: int,
    pair_counts: dict[int, int],
) -> dict[int, set[int]]:
    """Merge ``(left, right)`` in the given words, updating ``pair_counts`` in place.

    Returns the pairs created by the merge with the words they appear in. Like HF, the merged pair's
    own count is not reduced (it never competes again), and neighbours are read after earlier
    replacements in the same word, so ``a b a b`` merged on ``(a, b)`` counts one new ``(ab, ab)``.
    """
    created: dict[int, set[int]] = defaultdict(set)
    for w in positions:
        word = words[w]
        if left not in word:
            continue
        n = len(word)
        count = counts[w]
        out: list[int] = []
        i = 0
        while i < n:
            if word[i] == left and i + 1 < n and word[i + 1] == right:
                if out:
                    prev = out[-1]
                    pair_counts[prev << _SHIFT | left] -= count
                    key = prev << _SHIFT | new_id
                    pair_counts[key] += count
                    created[key].add(w)
                if i + 2 < n:
                    nxt = word[i + 2]
                    pair_counts[right << _SHIFT | nxt] -= count
                    key = new_id << _SHIFT | nxt
                    pair_counts[key] += count
                    created[key].add(w)
                out.append(new_id)
                i += 2
            else:
                out.append(word[i])
                i += 1
        words[w] = out
    return created


def assign_ids(
    merges: list[tuple[bytes, bytes]], specials: list[str], layout: str
) -> tuple[dict[bytes, int], dict[str, int]]:
    """(ordinary vocab, special token ids) of learned merges in ``layout`` ``"gpt2"`` or ``"hf"``.

    The 256 bytes come in byte-alphabet order, then each new merge result; special tokens come after them
    (``"gpt2"``) or before them, from 0 (``"hf"``).
    """
    offset = len(specials) if layout == "hf" else 0
    vocab: dict[bytes, int] = {}
    for b in byte_alphabet_order():
        vocab[bytes([b])] = offset + len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, offset + len(vocab))
    start = 0 if layout == "hf" else len(vocab)
    return vocab, {token: start + k for k, token in enumerate(specials)}
