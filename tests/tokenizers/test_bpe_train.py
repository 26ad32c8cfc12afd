"""BPE training: merges identical to HF tokenizers' ByteLevel BPE trainer, fast, with clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from _tok_cases import SHAKESPEARE

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import ByteLevelBPETokenizer, iter_lines, train_bpe
from tformer.tokenizers.bpe_train import count_words, learn_merges
from tformer.tokenizers.pretokenize import bytes_to_token

SYLLABLES = "the an ka ro mi ing er st qu é ñ ø 中 文 🙂 ab ba".split()
PUNCT = [",", ".", "!", "?", "'s", "'t", " - ", ":", "(", ")"]


def make_corpus(seed: int, n_lines: int, alphabet: list[str] | None = None) -> str:
    """A corpus with skewed word frequencies, punctuation, digits, tabs, blank lines and CRLF endings."""
    rng = random.Random(seed)
    alphabet = alphabet or SYLLABLES
    vocab = ["".join(rng.choices(alphabet, k=rng.randint(1, 4))) for _ in range(300)]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    lines = []
    for _ in range(n_lines):
        words = rng.choices(vocab, weights, k=rng.randint(0, 12))
        line = ""
        for w in words:
            r = rng.random()
            line += (" " if r < 0.8 else "  " if r < 0.85 else "\t") + (w.capitalize() if r < 0.1 else w)
            if rng.random() < 0.15:
                line += rng.choice(PUNCT)
            if rng.random() < 0.05:
                line += f" {rng.randint(0, 99999)}"
        lines.append(line + ("\r\n" if rng.random() < 0.1 else "\n"))
    return "".join(lines)


def hf_train(path: Path, vocab_size: int, min_frequency: int, specials: list[str]):
    implementations = pytest.importorskip("tokenizers.implementations")
    hf = implementations.ByteLevelBPETokenizer()
    hf.train(
        [str(path)],
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        show_progress=False,
    )
    model = json.loads(hf._tokenizer.to_str())["model"]
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    return merges, hf.get_vocab()


def our_merges(tok: ByteLevelBPETokenizer) -> list[list[str]]:
    return [[bytes_to_token(a), bytes_to_token(b)] for a, b in tok.merges]


@pytest.mark.parametrize(
    ("seed", "vocab_size", "min_frequency", "specials", "alphabet"),
    [
        (0, 600, 0, ["<|endoftext|>"], None),
        (1, 450, 3, ["<|endoftext|>", "<pad>"], None),
        (2, 2000, 2, [], None),  # runs out of pairs before the target size
        (3, 700, 0, ["<s>", "</s>", "<unk>"], ["a", "b", "ab", "ba", " "]),  # many equal counts and ties
    ],
)
def test_merges_and_vocab_equal_hf(tmp_path, seed, vocab_size, min_frequency, specials, alphabet):
    path = tmp_path / "corpus.txt"
    path.write_bytes(make_corpus(seed, 1500, alphabet).encode("utf-8"))
    hf_merges, hf_vocab = hf_train(path, vocab_size, min_frequency, specials)
    tok = train_bpe(
        iter_lines([path]), vocab_size, min_frequency=min_frequency, special_tokens=specials, layout="hf"
    )
    assert our_merges(tok) == hf_merges
    ours = {bytes_to_token(t): i for t, i in tok.vocab.items()} | tok.special_tokens
    assert ours == hf_vocab


@pytest.mark.slow
def test_tinyshakespeare_8192_equals_hf(shakespeare_text):
    hf_merges, _ = hf_train(SHAKESPEARE, 8192, 0, ["<|endoftext|>"])
    tok = ByteLevelBPETokenizer.train_from_files(SHAKESPEARE, 8192)
    assert our_merges(tok) == hf_merges
    assert tok.vocab_size == 8192
    assert tok.special_tokens == {"<|endoftext|>": 8191} and tok.eos_token_id == tok.bos_token_id == 8191
    assert tok.decode(tok.encode(shakespeare_text[:5000])) == shakespeare_text[:5000]


def test_ties_go_to_the_smallest_pair_of_ids():
    # Every pair occurs once; ids follow the code points of the byte characters, so "a b" < "c d" < "Ġ c".
    merges = learn_merges(count_words(["ab cd"]), 256 + 3)
    assert merges == [(b"a", b"b"), (b"c", b"d"), (b" ", b"cd")]


def test_gpt2_layout_puts_special_tokens_after_merges():
    text = make_corpus(5, 200)
    tok = train_bpe([text], 300, special_tokens=["<|endoftext|>", "<pad>"])
    assert tok.special_tokens == {"<|endoftext|>": 298, "<pad>": 299} and tok.vocab_size == 300
    assert tok.pad_token_id == 299 and tok.eos_token_id == 298
    assert sorted(tok.vocab.values()) == list(range(298))
    hf = train_bpe([text], 300, special_tokens=["<|endoftext|>", "<pad>"], layout="hf")
    assert hf.special_tokens == {"<|endoftext|>": 0, "<pad>": 1} and hf.merges == tok.merges


def test_min_frequency_stops_merging():
    # Pair counts: aa 6, ab 3, Ġa 2, Ġx 1, xy 1; after "aa", the tie (a, b) vs (aa, a) goes to the smaller ids.
    tok = train_bpe(["aaab aaab aaab xy"], 1000, min_frequency=3, special_tokens=[])
    assert tok.merges == [(b"a", b"a"), (b"a", b"b"), (b"aa", b"ab")]


def test_cl100k_pattern_trains_and_round_trips():
    text = "Numbers 1234567 and CONTRACTIONS DON'T split\r\nthe same way.\n" * 5
    tok = train_bpe([text], 300, pattern="cl100k")
    assert tok.decode(tok.encode(text)) == text
    # digit runs are cut into groups of at most three, so no merged token holds four digits
    assert all(not (a + b).isdigit() or len(a + b) <= 3 for a, b in tok.merges)


def test_progress_is_reported():
    calls = []
    train_bpe(["hello world " * 10], 270, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][1] == 269 and all(d <= t for d, t in calls)


def test_training_is_deterministic():
    text = make_corpus(7, 300)
    a = train_bpe([text], 500)
    b = train_bpe(text.splitlines(keepends=True)[::-1], 500)  # order of texts does not matter either
    c = train_bpe([text], 500)
    assert a.merges == c.merges
    assert isinstance(b, ByteLevelBPETokenizer)


@pytest.mark.parametrize("data", [[], [""], ["", ""]])
def test_empty_training_data_is_an_error(data):
    with pytest.raises(DataError, match="empty"):
        train_bpe(data, 300)


def test_vocab_size_below_the_byte_alphabet_is_an_error():
    with pytest.raises(ConfigError, match="at least 257"):
        train_bpe(["text"], 200)


def test_bad_layout_and_pattern_are_errors():
    with pytest.raises(ConfigError, match="layout"):
        train_bpe(["text"], 300, layout="other")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="regex"):
        train_bpe(["text"], 300, pattern="(unclosed")


def test_iter_lines_reports_file_and_byte_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond \xff line\n")
    with pytest.raises(DataError, match=r"bad\.txt: invalid UTF-8 at byte offset 17"):
        list(iter_lines([bad]))
    assert list(iter_lines([bad], errors="replace"))[1] == "second \ufffd line\n"
    assert list(iter_lines([bad], errors="ignore"))[1] == "second  line\n"
    with pytest.raises(DataError, match="cannot read"):
        list(iter_lines([tmp_path / "missing.txt"]))
    with pytest.raises(DataError, match="cannot read"):
        list(iter_lines([tmp_path]))


def test_class_methods_are_train_bpe(tmp_path):
    """ByteLevelBPETokenizer.train and train_from_files take train_bpe's options and give its result."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_corpus(3, 200), encoding="utf-8")
    options = {"min_frequency": 2, "special_tokens": ["<pad>", "<|endoftext|>"], "layout": "hf"}
    expected = train_bpe(iter_lines(corpus), 330, **options)
    for tok in (
        ByteLevelBPETokenizer.train(list(iter_lines(corpus)), 330, **options),
        ByteLevelBPETokenizer.train_from_files(corpus, 330, **options),
    ):
        assert (tok.vocab, tok.merges, tok.special_tokens) == (
            expected.vocab,
            expected.merges,
            expected.special_tokens,
        )
    assert expected.special_tokens == {"<pad>": 0, "<|endoftext|>": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'vocab'"):
        ByteLevelBPETokenizer.train(["text"], 300, vocab={})
