"""tformer.tokenizers.formats: the file formats as plain data, and the tokenizer-type registry."""

from __future__ import annotations

import json

import pytest

from tformer.errors import ConfigError
from tformer.tokenizers import ByteLevelBPETokenizer, CharTokenizer, WordPieceTokenizer, load_tokenizer
from tformer.tokenizers.formats import (
    TFORMER_FILE,
    byte_vocab_from_json,
    byte_vocab_to_json,
    merges_from_lines,
    merges_to_lines,
    read_text,
    read_vocab_txt,
    read_wordpiece_settings,
)
from tformer.tokenizers.loading import TOKENIZER_TYPES


def test_read_text_names_the_file(tmp_path):
    (tmp_path / "ok.txt").write_text("héllo", encoding="utf-8")
    assert read_text(tmp_path / "ok.txt") == "héllo"
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.txt"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match=r"latin1\.txt: not UTF-8 \(byte offset 3\)$"):
        read_text(tmp_path / "latin1.txt")
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte offset 3\); a vocab\.txt must be UTF-8"):
        read_vocab_txt(tmp_path / "latin1.txt")


def test_byte_level_strings_round_trip():
    vocab = {bytes([b]): b for b in range(256)} | {b" the": 256, "é".encode(): 257}
    entries = byte_vocab_to_json(vocab)
    assert entries["Ġthe"] == 256 and list(entries.values()) == sorted(entries.values())
    assert byte_vocab_from_json(entries) == vocab
    merges = [(b" ", b"t"), (b" t", b"he"), (b"\xc3", b"\xa9")]
    assert merges_to_lines(merges)[0] == "Ġ t"
    assert merges_from_lines(merges_to_lines(merges)) == merges
    with pytest.raises(ValueError, match="merge 1 'a b c' is not two byte-level tokens"):
        merges_from_lines(["a b", "a b c"])
    with pytest.raises(ValueError, match="not a byte-level string"):
        byte_vocab_from_json({"\u4e2d": 0})  # not one of GPT-2's 256 printable stand-ins


def test_vocab_txt_and_its_settings(tmp_path):
    (tmp_path / "vocab.txt").write_text("[UNK]\r\nab\nab\n##c\n", encoding="utf-8")
    assert read_vocab_txt(tmp_path / "vocab.txt") == {
        "[UNK]": 0,
        "ab": 2,
        "##c": 3,
    }  # a repeat keeps its last
    assert read_wordpiece_settings(tmp_path) == {}
    (tmp_path / "tokenizer_config.json").write_text("{broken")
    assert read_wordpiece_settings(tmp_path) == {}  # advisory: a broken file gives no settings
    settings = {"do_lower_case": False, "tokenize_chinese_chars": False, "model_max_length": 512}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    assert read_wordpiece_settings(tmp_path) == {"lowercase": False, "tokenize_chinese_chars": False}
    # explicit arguments win over the file
    assert WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt", lowercase=True).lowercase is True
    assert WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt").lowercase is False


def test_every_tokenizer_type_is_registered_and_round_trips(tmp_path):
    assert TOKENIZER_TYPES == {
        "byte_bpe": ByteLevelBPETokenizer,
        "wordpiece": WordPieceTokenizer,
        "char": CharTokenizer,
    }
    toks = [
        ByteLevelBPETokenizer.train(["the cat sat on the mat"], 270),
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "##s"]),
        CharTokenizer.train("the cats", special_tokens=["<pad>"]),
    ]
    for tok in toks:
        tok.padding_side = "left"
        out = tok.save(tmp_path / tok.file_type)
        doc = json.loads((out / TFORMER_FILE).read_text())
        assert doc["type"] == tok.file_type
        back = load_tokenizer(out / TFORMER_FILE)
        assert type(back) is type(tok) and back.padding_side == "left"
        assert back.encode("the cats") == tok.encode("the cats")
    doc["type"] = "sentencepiece"
    (out / TFORMER_FILE).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="malformed tokenizer file: unknown tokenizer type 'sentencepiece'"):
        load_tokenizer(out)
