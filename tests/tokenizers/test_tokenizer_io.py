"""Files: GPT-2's vocab.json + merges.txt (and OpenAI's names), vocab.txt, tformer's format, load_tokenizer."""

from __future__ import annotations

import json
import shutil

import pytest

from tformer.errors import ConfigError
from tformer.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer, load_tokenizer, train_bpe
from tformer.tokenizers.formats import TFORMER_FILE

TEXT = "the cat sat on the mat; the dog ate the cat's hat. 123 café 中文 🙂\n" * 20


@pytest.fixture(scope="module")
def bpe() -> ByteLevelBPETokenizer:
    return train_bpe([TEXT], 350, special_tokens=["<|endoftext|>", "<pad>"])


def test_bpe_save_writes_all_formats_and_round_trips(bpe, tmp_path):
    out = bpe.save(tmp_path / "tok")
    assert {p.name for p in out.iterdir()} == {TFORMER_FILE, "vocab.json", "merges.txt"}
    doc = json.loads((out / TFORMER_FILE).read_text())
    assert doc["format"] == "tformer-tokenizer" and doc["version"] == 1 and doc["type"] == "byte_bpe"
    for source in (out, out / TFORMER_FILE):
        back = load_tokenizer(source)
        assert back.merges == bpe.merges and back.vocab == bpe.vocab
        assert back.special_tokens == bpe.special_tokens and back.pad_token_id == bpe.pad_token_id
    (out / TFORMER_FILE).unlink()  # only GPT-2's files left: specials recovered from vocab.json
    back = load_tokenizer(out)
    assert back.special_tokens == bpe.special_tokens and back.merges == bpe.merges
    assert back.encode(TEXT) == bpe.encode(TEXT)


def test_gpt2_files_under_openai_and_hf_names(gpt2_data_dir, gpt2_tok, tmp_path):
    assert gpt2_tok.vocab_size == 50257 and len(gpt2_tok.merges) == 50000
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    shutil.copy(gpt2_data_dir / "encoder.json", hf_dir / "vocab.json")
    shutil.copy(gpt2_data_dir / "vocab.bpe", hf_dir / "merges.txt")
    text = "Hello world, it's GPT-2!"
    assert load_tokenizer(hf_dir).encode(text) == gpt2_tok.encode(text)
    # Saving GPT-2 writes files byte-identical in content to the originals.
    out = gpt2_tok.save(tmp_path / "again")
    assert json.loads((out / "vocab.json").read_text()) == json.loads(
        (gpt2_data_dir / "encoder.json").read_text()
    )
    ours = (out / "merges.txt").read_text().split("\n")[1:]
    theirs = (gpt2_data_dir / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    assert [m for m in ours if m] == [m for m in theirs if m]


def test_wordpiece_save_load(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "world", "##s", "!"]
    tok = WordPieceTokenizer(vocab, lowercase=False)
    out = tok.save(tmp_path / "wp")
    assert (out / "vocab.txt").read_text().split("\n")[:10] == vocab
    back = load_tokenizer(out)
    assert isinstance(back, WordPieceTokenizer) and back.lowercase is False
    assert back.encode("Hello worlds!") == tok.encode("Hello worlds!")
    (out / TFORMER_FILE).unlink()
    (out / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    from_txt = load_tokenizer(out / "vocab.txt")
    assert from_txt.lowercase is False and from_txt.encode("Hello") == tok.encode("Hello")


def test_malformed_files_give_one_line_errors(tmp_path):
    good_vocab = {chr(c): i for i, c in enumerate(range(33, 127))}
    cases = {
        "vocab_not_json": ("{not json", "#version: 0.2\n", r"invalid JSON"),
        "vocab_not_object": ("[1, 2]", "#version: 0.2\n", r"JSON object"),
        "vocab_bad_id": ('{"a": "x"}', "#version: 0.2\n", r"non-negative integers"),
        "merge_three_parts": (
            json.dumps(good_vocab),
            "#version: 0.2\na b c\n",
            r"line 2: expected two tokens",
        ),
        "merge_unknown": (json.dumps(good_vocab), "#version: 0.2\na b\n", r"missing from"),
        "missing_bytes": (json.dumps(good_vocab), "#version: 0.2\n", r"256 byte tokens"),
    }
    for name, (vocab_text, merges_text, pattern) in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "vocab.json").write_text(vocab_text)
        (d / "merges.txt").write_text(merges_text)
        with pytest.raises(ConfigError, match=pattern) as info:
            load_tokenizer(d)
        assert "\n" not in str(info.value), name


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ConfigError, match="merges.txt"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "v2"
    bad.mkdir()
    (bad / TFORMER_FILE).write_text(json.dumps({"format": "tformer-tokenizer", "version": 99}))
    with pytest.raises(ConfigError, match="version 99"):
        load_tokenizer(bad)
    (bad / TFORMER_FILE).write_text(json.dumps({"format": "tformer-tokenizer", "version": 1, "type": "char"}))
    with pytest.raises(ConfigError, match="malformed tokenizer file"):
        load_tokenizer(bad)
    (bad / TFORMER_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="not a tformer tokenizer"):
        load_tokenizer(bad)


def test_hf_trained_files_load_and_match(tmp_path):
    implementations = pytest.importorskip("tokenizers.implementations")
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    hf = implementations.ByteLevelBPETokenizer()
    hf.train(
        [str(corpus)], vocab_size=330, min_frequency=0, special_tokens=["<|endoftext|>"], show_progress=False
    )
    hf.save_model(str(tmp_path))
    tok = load_tokenizer(tmp_path)
    assert tok.special_tokens == {"<|endoftext|>": 0}
    for text in ["the cat's hat", TEXT[:200], "unseen wörds ✓"]:
        assert tok.encode(text) == hf.encode(text).ids
