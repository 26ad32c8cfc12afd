"""Training byte-level BPE, merge for merge identical to Hugging Face ``tokenizers``' BpeTrainer.

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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from tformer.errors import ConfigError, DataError
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.tokenizers.pretokenize import byte_alphabet_order, make_splitter

_SHIFT = 24  # pair key = left << 24 | right; key order equals (left, right) order
_MASK = (1 << _SHIFT) - 1

ProgressFn = Callable[[int, int], None]


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
    token_bytes = [bytes([b]) for b in alphabet]
    token_ids = {t: i for i, t in enumerate(token_bytes)}
    words = [[byte_to_id[b] for b in w.encode("utf-8")] for w in word_counts]
    counts = list(word_counts.values())

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

    merges: list[tuple[bytes, bytes]] = []
    while len(token_bytes) < max_tokens and heap:
        neg_count, key, _, positions = heapq.heappop(heap)
        count = pair_counts[key]
        if -neg_count != count:
            heapq.heappush(heap, (-count, key, seq, positions))
            seq += 1
            continue
        if count < 1 or count < min_frequency:
            break
        left, right = key >> _SHIFT, key & _MASK
        new_bytes = token_bytes[left] + token_bytes[right]
        new_id = token_ids.get(new_bytes)
        if new_id is None:
            new_id = len(token_bytes)
            token_bytes.append(new_bytes)
            token_ids[new_bytes] = new_id
        merges.append((token_bytes[left], token_bytes[right]))
        created = _apply_merge(words, counts, positions, left, right, new_id, pair_counts)
        for new_key, new_positions in created.items():
            if pair_counts[new_key] > 0:
                heapq.heappush(heap, (-pair_counts[new_key], new_key, seq, new_positions))
                seq += 1
        if progress is not None:
            progress(len(token_bytes), max_tokens)
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
    """Train a byte-level BPE tokenizer.

    Args:
        data: texts; each is pre-tokenised on its own (to train on files as HF does, pass their lines:
            :func:`tformer.tokenizers.io.iter_lines`).
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
    if vocab_size > _MASK:
        raise ConfigError(f"vocab_size {vocab_size} is too large (at most {_MASK})")
    word_counts = count_words(data, pattern)
    if not word_counts:
        raise DataError("no training text: the data is empty; give at least one non-empty text or file")
    merges = learn_merges(word_counts, vocab_size - len(specials), min_frequency, progress)
    return _build(merges, specials, pattern, layout)


def _build(
    merges: list[tuple[bytes, bytes]], specials: list[str], pattern: str, layout: str
) -> ByteLevelBPETokenizer:
    offset = len(specials) if layout == "hf" else 0
    vocab: dict[bytes, int] = {}
    for b in byte_alphabet_order():
        vocab[bytes([b])] = offset + len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, offset + len(vocab))
    start = 0 if layout == "hf" else len(vocab)
    special_ids = {token: start + k for k, token in enumerate(specials)}
    return ByteLevelBPETokenizer(vocab, merges, special_ids, pattern)
