"""Learning a WordPiece vocabulary as Hugging Face ``tokenizers``' WordPieceTrainer does.

That trainer is its BPE trainer over characters: a piece inside a word carries the ``##`` prefix, the most
frequent adjacent pair is merged (``"t" + "##h" -> "th"``, ``"##h" + "##e" -> "##he"``) until the vocabulary
(special tokens, characters, ``##`` characters and merge results) reaches its size, and the vocabulary is
everything ever created. The entry point is :func:`tformer.tokenizers.wordpiece.train_wordpiece`; this module
holds the algorithm and knows no tokenizer class.

Hugging Face's run is not deterministic: the ``##`` characters get their ids in the iteration order of a hash
map of words, and equal pair counts are broken by ids, so where counts tie two runs may merge differently
(as may its ``limit_alphabet`` cut among characters of equal frequency). tformer numbers the ``##``
characters by code point and cuts ties by (count, character), so its result is deterministic and equals
Hugging Face's whenever no such tie is reached.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tformer.tokenizers.bpe_train import ProgressFn, merge_pairs


def alphabet(word_counts: dict[str, int], limit: int | None = None) -> list[str]:
    """The characters of the words, sorted by code point; with ``limit``, only the ``limit`` most frequent.

    Example:
        >>> alphabet({"abba": 2, "cab": 1}, limit=2)
        ['a', 'b']
    """
    freq: Counter[str] = Counter()
    for word, count in word_counts.items():
        for ch in word:
            freq[ch] += count
    chars = sorted(freq)
    if limit is not None and len(chars) > limit:
        rarest_first = sorted(chars, key=lambda c: (freq[c], c))
        chars = sorted(rarest_first[len(chars) - limit :])
    return chars


def learn_vocab(
    word_counts: dict[str, int],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    *,
    min_frequency: int = 0,
    limit_alphabet: int | None = None,
    prefix: str = "##",
    progress: ProgressFn | None = None,
) -> list[str]:
    """The WordPiece vocabulary in id order: special tokens, characters, ``##`` characters, merge results.

    Args:
        word_counts: pre-tokenised (and normalised) word -> count.
        vocab_size: stop merging once the vocabulary is this large (special tokens included).
        special_tokens: ids 0..k-1, in order.
        min_frequency: stop when the best pair occurs fewer times.
        limit_alphabet: keep only this many characters (the most frequent); words lose the others.
        prefix: marks a piece that continues a word.
        progress: called as ``progress(tokens_so_far, vocab_size)`` after each merge.

    Example:
        >>> learn_vocab({"hug": 3, "hugs": 1}, 8, ["[UNK]"])
        ['[UNK]', 'g', 'h', 's', 'u', '##g', '##s', '##u']
    """
    tokens = list(dict.fromkeys(special_tokens))
    chars = alphabet(word_counts, limit_alphabet)
    tokens += [c for c in chars if c not in tokens]
    kept = set(chars)
    # a "##" character exists where the character continues some word
    inside = {ch for word in word_counts for ch in word[1:] if ch in kept}
    tokens += [prefix + c for c in sorted(inside) if prefix + c not in tokens]
    ids = {t: i for i, t in enumerate(tokens)}
    # a character outside the kept alphabet is dropped; the next one still continues the word
    words = [
        [ids[ch if k == 0 else prefix + ch] for k, ch in enumerate(word) if ch in kept]
        for word in word_counts
    ]

    def join(left: str, right: str) -> str:
        return left + right.removeprefix(prefix)

    merge_pairs(words, list(word_counts.values()), tokens, vocab_size, min_frequency, join, progress)
    return tokens


def count_words(texts: Iterable[str], split) -> dict[str, int]:
    """word -> count over ``texts``, each cut into words by ``split`` (normalise, then pre-tokenise)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    return dict(counts)
