"""Byte-level BPE encoding surface: merges by rank, special-token policy, batches, streaming decode."""

from __future__ import annotations

import gc
import random

import pytest
import torch
from _tok_cases import HARD_CASES

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import ByteLevelBPETokenizer, train_bpe
from tformer.tokenizers.bpe import merge
from tformer.tokenizers.pretokenize import bytes_to_unicode, make_splitter, token_to_bytes

CORPUS = "the cat sat on the mat. the dog ate the cat's hat!\nThe end; 12345 — café 中文 🙂\n" * 30


@pytest.fixture(scope="module")
def tok() -> ByteLevelBPETokenizer:
    return train_bpe([CORPUS], 400, special_tokens=["<|endoftext|>", "<pad>"])


def test_merge_helper():
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5, 5], (5, 5), 6) == [6, 6]
    assert merge([], (1, 2), 3) == []


def test_byte_table_is_a_bijection_onto_printable_chars():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert token_to_bytes("Ġhello") == b" hello"


def test_gpt2_split_has_exact_ascii_fast_path():
    import regex

    from tformer.tokenizers.pretokenize import GPT2_PATTERN

    slow = regex.compile(GPT2_PATTERN).findall
    split = make_splitter("gpt2")
    for text in HARD_CASES + ["".join(chr(c) for c in range(128)) * 3, "a\x0b\x0cb \x1c\x1d x"]:
        assert split(text) == slow(text)


def test_cl100k_pattern_equals_tiktoken_regex():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    import inspect
    import re

    import regex

    source = inspect.getsource(openai_public.cl100k_base)
    theirs = regex.compile(re.search(r'"pat_str": r"""(.*?)"""', source).group(1))
    split = make_splitter("cl100k")
    for text in HARD_CASES + ["I'VE 123456789 x\r\n\r\n  y", "don'T\n\n\tHello!!\n"]:
        assert split(text) == theirs.findall(text)


def test_round_trip_and_cache(tok):
    for text in HARD_CASES:
        ids = tok.encode(text, disallowed_special=())
        assert tok.decode(ids) == text
        assert tok.encode(text, disallowed_special=()) == ids  # second time from the chunk cache
    assert len(tok.encode("the cat")) < len(b"the cat")


def test_special_token_policy(tok):
    text = "a<|endoftext|>b<pad>"
    with pytest.raises(DataError, match="special token"):
        tok.encode(text)
    eot, pad = tok.special_tokens["<|endoftext|>"], tok.special_tokens["<pad>"]
    assert tok.encode(text, allowed_special="all") == [*tok.encode("a"), eot, *tok.encode("b"), pad]
    only = tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert eot in only and pad not in only
    with pytest.raises(DataError, match="<pad>"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    assert tok.encode_ordinary(text) == tok.encode(text, disallowed_special=())
    assert tok.decode(tok.encode(text, allowed_special="all")) == text
    assert tok.decode(tok.encode(text, allowed_special="all"), skip_special_tokens=True) == "ab"
    with pytest.raises(ConfigError, match="unknown special"):
        tok.encode("x", allowed_special={"<nope>"})
    with pytest.raises(DataError, match="str"):
        tok.encode(b"bytes")  # type: ignore[arg-type]


def test_decode_errors_and_inputs(tok):
    with pytest.raises(DataError, match="not in the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(DataError, match="decode_batch"):
        tok.decode([[1, 2]])
    ids = tok.encode("the cat")
    assert tok.decode(torch.tensor(ids)) == "the cat"
    assert tok.decode_batch(torch.tensor([ids, ids])) == ["the cat", "the cat"]
    assert tok.decode([tok.token_to_id(b"\xe4")]) == "\ufffd"  # a lone lead byte of a 3-byte character


def test_decode_stream_holds_back_partial_characters(gpt2_tok):
    text = "héllo 中文 👨\u200d👩\u200d👧 done"
    stream = gpt2_tok.decode_stream()
    pieces = [stream.step(i) for i in gpt2_tok.encode(text)]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # some ids end inside a multi-byte character
    stream = gpt2_tok.decode_stream()
    assert stream.extend(gpt2_tok.encode("🙂")[:-1]) == "" and stream.flush() == "\ufffd"


def test_encode_batch_padding_and_truncation(tok):
    tok.pad_token_id = tok.special_tokens["<pad>"]
    texts = ["the cat", "the cat sat on the mat", ""]
    lengths = [len(tok.encode(t)) for t in texts]
    out = tok.encode_batch(texts, padding=True, return_tensors="pt")
    assert out["input_ids"].shape == (3, max(lengths)) and out["input_ids"].dtype == torch.long
    assert out["attention_mask"].sum(1).tolist() == lengths
    assert "token_type_ids" not in out
    assert out["input_ids"][0, lengths[0] :].eq(tok.pad_token_id).all()
    tok.padding_side = "left"
    try:
        left = tok.encode_batch(texts, padding=True)
        assert left["input_ids"][0][-lengths[0] :] == tok.encode(texts[0])
        assert left["attention_mask"][0] == [0] * (max(lengths) - lengths[0]) + [1] * lengths[0]
    finally:
        tok.padding_side = "right"
    cut = tok.encode_batch(texts, truncation=True, max_length=3)
    assert [len(r) for r in cut["input_ids"]] == [min(n, 3) for n in lengths]
    fixed = tok.encode_batch(texts, padding="max_length", truncation=True, max_length=4, return_tensors="pt")
    assert fixed["input_ids"].shape == (3, 4)
    assert tok.encode_batch(texts)["input_ids"] == [tok.encode(t) for t in texts]


def test_encode_batch_errors(gpt2_tok):
    with pytest.raises(ConfigError, match="pad token"):
        gpt2_tok.encode_batch(["a", "bb cc"], padding=True)
    with pytest.raises(ConfigError, match="padding=True"):
        gpt2_tok.encode_batch(["a", "bb cc"], return_tensors="pt")
    with pytest.raises(ConfigError, match="max_length"):
        gpt2_tok.encode_batch(["a"], truncation=True)
    with pytest.raises(DataError, match="list of strings"):
        gpt2_tok.encode_batch("a single string")  # type: ignore[arg-type]


def test_constructor_validates_vocab_and_merges():
    vocab = {bytes([b]): b for b in range(256)}
    with pytest.raises(ConfigError, match="256 byte tokens"):
        ByteLevelBPETokenizer({b"a": 0}, [])
    with pytest.raises(ConfigError, match="missing from the vocabulary"):
        ByteLevelBPETokenizer(vocab, [(b"a", b"b")])
    with pytest.raises(ConfigError, match="distinct"):
        ByteLevelBPETokenizer(vocab, [], {"<s>": 5})
    tok = ByteLevelBPETokenizer(vocab | {b"ab": 256}, [(b"a", b"b")], {"<s>": 257})
    assert tok.encode("abab") == [256, 256] and tok.vocab_size == 258 and tok.bos_token_id == 257


def reference_bpe(vocab: dict[bytes, int], merges: list[tuple[bytes, bytes]], data: bytes) -> list[int]:
    """Textbook BPE on ``data``: merge the lowest-ranked adjacent pair, leftmost first, until none has one."""
    ranks: dict[tuple[int, int], int] = {}
    for rank, (a, b) in enumerate(merges):
        ranks.setdefault((vocab[a], vocab[b]), rank)
    ids = [vocab[bytes([b])] for b in data]
    while True:
        found = [(ranks[pair], i) for i, pair in enumerate(zip(ids, ids[1:])) if pair in ranks]
        if not found:
            return ids
        rank, i = min(found)
        a, b = merges[rank]
        ids[i : i + 2] = [vocab[a + b]]


def random_merges(rng: random.Random, letters: bytes, n: int) -> tuple[dict[bytes, int], list]:
    """``n`` random merges over ``letters`` in creation order (a tree, as training makes), and the vocab."""
    vocab = {bytes([b]): b for b in range(256)}
    tokens = [bytes([c]) for c in letters]
    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < n:
        a, b = rng.choice(tokens), rng.choice(tokens)
        if len(a + b) <= 8 and a + b not in vocab:
            vocab[a + b] = len(vocab)
            tokens.append(a + b)
            merges.append((a, b))
    return vocab, merges


def test_whole_chunk_shortcut_skips_unreachable_tokens():
    # "abc" is a token, but BPE on its bytes merges "ab" first and never gets there.
    vocab = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
    tok = ByteLevelBPETokenizer(vocab, [(b"a", b"b"), (b"b", b"c"), (b"a", b"bc")])
    assert tok.encode("abc bc") == [256, ord("c"), ord(" "), 257]


@pytest.mark.parametrize("letters", [b"ab", b"abc", b"abcde"])
def test_encode_equals_textbook_bpe_on_random_merge_lists(letters):
    # Random merge lists have many tokens that BPE cannot reach and many rank ties between equal pairs;
    # shuffled ones are not trees (operands made later), which turns the whole-chunk shortcut off.
    rng = random.Random(len(letters))
    for trial in range(40):
        vocab, merges = random_merges(rng, letters, rng.randint(1, 40))
        if trial % 4 == 3:
            rng.shuffle(merges)
        tok = ByteLevelBPETokenizer(vocab, merges)
        words = [t for t in vocab if len(t) > 1]
        words += [bytes(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(30)]
        for word in words:
            assert tok.encode(word.decode()) == reference_bpe(vocab, merges, word), (merges, word)


def test_new_chunks_between_cached_ones_and_a_full_cache(tok, monkeypatch):
    import tformer.tokenizers.bpe as bpe

    text = "the cat sat on the mat; zebras eat the cat's hat"
    expected = [i for word in make_splitter("gpt2")(text) for i in tok.encode(word)]
    tok.clear_cache()
    tok.encode("the cat sat")
    assert tok.encode(text) == expected  # new chunks after and between cached ones
    monkeypatch.setattr(bpe, "_CACHE_LIMIT", 4)
    tok.clear_cache()
    assert tok.encode(text) == expected  # more distinct chunks than the cache holds
    assert tok.encode("the end") == [*tok.encode("the"), *tok.encode(" end")]


def test_encoding_leaves_the_garbage_collector_as_it_was(tok):
    tok.clear_cache()
    tok.encode("fresh words to encode")
    assert gc.isenabled()
    gc.disable()
    try:
        tok.clear_cache()
        tok.encode("more fresh words")
        assert not gc.isenabled()
    finally:
        gc.enable()
