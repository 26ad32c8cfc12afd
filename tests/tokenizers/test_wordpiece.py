"""WordPiece: BERT's normalisation and greedy sub-words, with ids identical to HF transformers' BertTokenizer."""

from __future__ import annotations

import pytest

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import WordPieceTokenizer
from tformer.tokenizers.wordpiece import is_punctuation, normalize, pre_tokenize

TEXTS = [
    "Hello, world! This is BERT's tokenizer.",
    "The quick brown fox jumps over the lazy dog; the DOG sleeps.",
    "unaffable unbelievable reorganisation hyper-parameters",
    "Café naïve résumé Ångström Zürich SÃO PAULO",
    "ΟΔΟΣ ΣΟΦΟΣ Straße İstanbul ﬁne ligature",
    "中文字符 and 日本語 mixed with English",
    "한국어 텍스트 입니다",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic",
    "zero\u200bwidth\u200djoiner\ufeffbom and control\x01\x7f chars \ufffd",
    "emoji 🙂 👍🏽 are unknown here",
    "numbers 3.14 and 1,000 and 2024-01-01",
    "$100 ^caret^ `tick` ~tilde~ ¿qué? «quotes» — dash…",
    "a" * 101 + " short",
    "x" * 100,
    "supercalifragilisticexpialidocious",
    "",
    "   ",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_vocab(texts: list[str], **settings) -> list[str]:
    """Specials, every character (plain and ##), a third of the words whole, and some word-final pieces."""
    vocab = list(SPECIALS) + ["[unused0]"]
    seen = set(vocab)

    def add(token: str) -> None:
        if token not in seen:
            seen.add(token)
            vocab.append(token)

    words = [w for t in texts for w in pre_tokenize(normalize(t, **settings))]
    for k, word in enumerate(words):
        if len(word) > 60 or any(ord(c) > 0x1F000 for c in word):
            continue  # leave long words and emoji out: they must become [UNK]
        for i, ch in enumerate(word):
            add(ch if i == 0 else "##" + ch)
        if k % 3 == 0:
            add(word)
        if k % 3 == 1 and len(word) > 4:
            add(word[:3])
            add("##" + word[3:])
    return vocab


def hf_bert(vocab: list[str], **kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, **kwargs)


SETTINGS = [
    ({}, {}),
    ({"lowercase": False}, {"do_lower_case": False}),
    ({"lowercase": True, "strip_accents": False}, {"do_lower_case": True, "strip_accents": False}),
    ({"lowercase": False, "strip_accents": True}, {"do_lower_case": False, "strip_accents": True}),
    ({"tokenize_chinese_chars": False}, {"tokenize_chinese_chars": False}),
]


@pytest.mark.parametrize(("ours", "theirs"), SETTINGS)
def test_ids_equal_hf_bert(ours, theirs):
    vocab = build_vocab(TEXTS, **ours)
    tok = WordPieceTokenizer(vocab, **ours)
    hf = hf_bert(vocab, **theirs)
    for text in TEXTS:
        assert tok.encode(text) == hf(text)["input_ids"], text
    assert tok.unk_token_id in tok.encode(TEXTS[9])  # emoji are unknown


def test_pairs_padding_truncation_equal_hf():
    vocab = build_vocab(TEXTS)
    tok = WordPieceTokenizer(vocab)
    hf = hf_bert(vocab)
    firsts, seconds = TEXTS[:6], TEXTS[6:12]
    for max_length in (8, 13, 24, 64):
        ours = tok.encode_batch(firsts, seconds, padding=True, truncation=True, max_length=max_length)
        theirs = hf(firsts, seconds, padding=True, truncation=True, max_length=max_length)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert ours[key] == theirs[key], (max_length, key)
    ours = tok.encode_batch(TEXTS, padding="max_length", truncation=True, max_length=20, return_tensors="pt")
    theirs = hf(TEXTS, padding="max_length", truncation=True, max_length=20, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[key].tolist() == theirs[key].tolist()
        assert ours[key].shape == (len(TEXTS), 20)


def test_special_tokens_in_text_follow_the_policy():
    vocab = build_vocab(TEXTS + ["paris is the capital"])
    tok = WordPieceTokenizer(vocab)
    text = "paris is the [MASK] capital"
    with pytest.raises(DataError, match=r"\[MASK\]"):
        tok.encode(text)
    ids = tok.encode(text, allowed_special="all")
    assert ids == hf_bert(vocab)(text)["input_ids"]
    assert tok.mask_token_id in ids
    as_text = tok.encode(text, disallowed_special=())
    assert tok.mask_token_id not in as_text and len(as_text) > len(ids)


def test_special_ids_and_framing():
    tok = WordPieceTokenizer(build_vocab(TEXTS))
    roles = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert roles == (0, 1, 2, 3, 4)
    assert tok.bos_token_id is None and tok.eos_token_id is None
    assert tok.encode("hello")[0] == 2 and tok.encode("hello")[-1] == 3
    assert tok.encode("hello", add_special_tokens=False) == tok.encode("hello")[1:-1]
    assert tok.num_special_tokens_to_add(pair=True) == 3


def test_greedy_longest_match_and_decode():
    vocab = SPECIALS + ["un", "##aff", "##able", "##a", "##ff", "aff", "play", "##ing", ",", "!"]
    tok = WordPieceTokenizer(vocab)
    assert tok.tokenize("Unaffable, playing!") == ["un", "##aff", "##able", ",", "play", "##ing", "!"]
    assert tok.tokenize("unknownword") == ["[UNK]"]
    ids = tok.encode("unaffable playing")
    assert tok.decode(ids) == "[CLS] unaffable playing [SEP]"
    assert tok.decode(ids, skip_special_tokens=True) == "unaffable playing"


def test_decode_stream_glues_continuations():
    tok = WordPieceTokenizer(SPECIALS + ["un", "##aff", "##able", "play", "##ing", "!"])
    ids = tok.encode("unaffable playing!")
    stream = tok.decode_stream(skip_special_tokens=True)
    pieces = [stream.step(i) for i in ids]
    assert pieces == ["", "un", "aff", "able", " play", "ing", " !", ""]
    assert "".join(pieces) + stream.flush() == tok.decode(ids, skip_special_tokens=True)


def test_word_longer_than_limit_is_unknown():
    tok = WordPieceTokenizer(SPECIALS + ["a", "##a"], max_input_chars_per_word=5)
    assert tok.tokenize("aaaaa aaaaaa") == ["a", "##a", "##a", "##a", "##a", "[UNK]"]


def test_helpers():
    assert normalize("ÀB\x00c\u200b") == "abc"
    assert normalize("ÀB", lowercase=False) == "ÀB"
    assert pre_tokenize("a,b  c") == ["a", ",", "b", "c"]
    assert is_punctuation("`") and is_punctuation("、") and not is_punctuation(" ")


def test_vocab_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown token"):
        WordPieceTokenizer(["a", "b"])
    with pytest.raises(ConfigError, match="empty"):
        WordPieceTokenizer([])
    empty = tmp_path / "vocab.txt"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty vocabulary"):
        WordPieceTokenizer.from_vocab_file(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"[UNK]\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        WordPieceTokenizer.from_vocab_file(binary)
