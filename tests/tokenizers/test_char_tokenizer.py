"""Character tokenizer: the classic char-level vocabulary with an explicit unknown-character policy."""

from __future__ import annotations

import pytest

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import CharTokenizer, load_tokenizer


def test_shakespeare_vocabulary_is_the_classic_65(shakespeare_text):
    tok = CharTokenizer.train(shakespeare_text)
    assert tok.vocab_size == 65
    assert tok.chars == sorted(set(shakespeare_text))
    ids = tok.encode(shakespeare_text[:1000])
    assert tok.decode(ids) == shakespeare_text[:1000]


def test_ids_follow_sorted_characters_then_specials():
    tok = CharTokenizer.train(["hello", "world"], special_tokens=["<|endoftext|>"])
    assert tok.chars == ["d", "e", "h", "l", "o", "r", "w"]
    assert tok.encode("held") == [2, 1, 3, 0]
    assert tok.special_tokens == {"<|endoftext|>": 7} and tok.eos_token_id == 7
    assert tok.encode("he<|endoftext|>", allowed_special="all") == [2, 1, 7]


def test_unknown_policies():
    with pytest.raises(DataError, match=r"'z' \(U\+007A\) at position 2"):
        CharTokenizer.train("abc").encode("abz")
    skip = CharTokenizer.train("abc", unknown="skip")
    assert skip.decode(skip.encode("a?b!c")) == "abc"
    replace = CharTokenizer.train("abc", unknown="replace")
    assert replace.unk_token_id == 3 and replace.vocab_size == 4
    assert replace.encode("a?") == [0, 3]
    assert replace.decode(replace.encode("a?")) == "a<unk>"
    assert replace.decode(replace.encode("a?"), skip_special_tokens=True) == "a"


def test_errors():
    with pytest.raises(DataError, match="empty"):
        CharTokenizer.train(["", ""])
    with pytest.raises(ConfigError, match="unknown must be"):
        CharTokenizer(["a"], unknown="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="distinct single"):
        CharTokenizer(["a", "a"])
    with pytest.raises(DataError, match="not in the vocabulary"):
        CharTokenizer(["a"]).decode([1])


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.train("hello world", special_tokens=["<pad>"], unknown="replace")
    tok.save(tmp_path / "char")
    back = load_tokenizer(tmp_path / "char")
    assert isinstance(back, CharTokenizer)
    assert back.chars == tok.chars and back.special_tokens == tok.special_tokens
    assert back.unknown == "replace" and back.pad_token_id == tok.pad_token_id
    assert back.encode("hello?!") == tok.encode("hello?!")
