"""Hugging Face's tokenizer.json both ways: tokenizers trained here load in ``tokenizers`` and
``transformers.AutoTokenizer`` with identical ids; ``load_tokenizer`` reads a directory holding only
tokenizer.json; kinds tformer does not implement are refused by name. Also the special-token policy: refused
by default, Hugging Face's recognition one argument away, its splitting another."""

from __future__ import annotations

import json

import pytest
from _tok_cases import HARD_CASES

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    train_bpe,
    train_wordpiece,
)

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

CORPUS = [
    "The cat sat on the mat; the dog ate the cat's hat. 123 café 中文 🙂\n",
    "Hello WORLD, naïve Ünïcode! x=1+2  tabs\tand\nnewlines, it's they're 3.14\n",
    "Tokenizers learn merges from text like this one, line after line.\n",
] * 30
TEXTS = [t for t in HARD_CASES if "<|endoftext|>" not in t] + [
    "The cat's hat, the dog's mat!",
    "UPPER lower MiXeD 42",
    "unseen words: zebra quokka",
]


def kinds() -> dict:
    return {
        "bpe": train_bpe(CORPUS, 400, special_tokens=["<|endoftext|>", "<pad>"]),
        "bpe-hf-layout": train_bpe(CORPUS, 400, special_tokens=["<s>", "</s>", "<pad>"], layout="hf"),
        "bpe-cl100k": train_bpe(CORPUS, 400, pattern="cl100k"),
        "wordpiece": train_wordpiece(CORPUS, 150),
        "wordpiece-cased": train_wordpiece(CORPUS, 150, lowercase=False, strip_accents=False),
        "char-replace": CharTokenizer.train(CORPUS, special_tokens=["<pad>"], unknown="replace"),
        "char-skip": CharTokenizer.train(CORPUS, special_tokens=["<pad>", "<eos>"], unknown="skip"),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> (tformer tokenizer, directory holding only its tokenizer.json + tokenizer_config.json)."""
    out = {}
    for name, tok in kinds().items():
        d = tmp_path_factory.mktemp(name)
        tok.save(d, format="hf")
        out[name] = (tok, d)
    return out


def raw(directory):
    """``tokenizers.Tokenizer.from_file`` with any fixed padding/truncation switched off."""
    tok = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@pytest.mark.parametrize("name", list(kinds()))
def test_hf_files_are_all_that_save_hf_writes(saved, name):
    _, d = saved[name]
    assert {p.name for p in d.iterdir()} == {"tokenizer.json", "tokenizer_config.json"}


@pytest.mark.parametrize("name", list(kinds()))
def test_tokenizers_library_gives_the_same_ids(saved, name):
    tok, d = saved[name]
    hf = raw(d)
    for text in TEXTS:
        assert hf.encode(text).ids == tok.encode(text), text


@pytest.mark.parametrize("name", list(kinds()))
def test_auto_tokenizer_gives_the_same_ids(saved, name):
    tok, d = saved[name]
    auto = transformers.AutoTokenizer.from_pretrained(d)
    for text in TEXTS:
        assert auto(text)["input_ids"] == tok.encode(text), text
    if isinstance(tok, WordPieceTokenizer):  # sentence pairs: [CLS] A [SEP] B [SEP] and their token types
        got = tok.encode_batch(["the cat sat"], ["on the mat"])
        ref = auto("the cat sat", "on the mat")
        assert ref["input_ids"] == got["input_ids"][0] and ref["token_type_ids"] == got["token_type_ids"][0]
    assert auto.pad_token_id == tok.pad_token_id and auto.eos_token_id == tok.eos_token_id


@pytest.mark.parametrize("name", list(kinds()))
def test_load_tokenizer_reads_a_directory_of_only_tokenizer_json(saved, name, tmp_path):
    tok, d = saved[name]
    (tmp_path / "tokenizer.json").write_bytes((d / "tokenizer.json").read_bytes())
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.special_tokens == tok.special_tokens
    assert back.pad_token_id == tok.pad_token_id and back.vocab_size == tok.vocab_size
    for text in TEXTS:
        assert back.encode(text) == tok.encode(text), text
    assert load_tokenizer(tmp_path / "tokenizer.json").encode(TEXTS[-1]) == tok.encode(TEXTS[-1])


def test_tokenizer_json_keeps_what_the_classic_files_lose(saved):
    """A cl100k pattern has no place in vocab.json/merges.txt: with both present, tokenizer.json wins."""
    tok, d = saved["bpe-cl100k"]
    tok.save(d)  # adds tformer's file and GPT-2's vocab.json + merges.txt
    (d / "tformer_tokenizer.json").unlink()
    back = load_tokenizer(d)
    assert back.pattern == tok.pattern and back.encode("x 12345 ab") == tok.encode("x 12345 ab")


def test_char_error_policy_is_written_as_skip(tmp_path):
    """tokenizer.json cannot raise on an unknown character: "error" becomes "skip", as documented."""
    tok = CharTokenizer.train(["abc"], unknown="error")
    tok.save(tmp_path, format="hf")
    assert raw(tmp_path).encode("abxc").ids == [0, 1, 2]
    assert load_tokenizer(tmp_path).unknown == "skip"


def test_gpt2_round_trips_through_tokenizer_json(gpt2_tok, tmp_path):
    gpt2_tok.save(tmp_path, format="hf")
    hf, back = raw(tmp_path), load_tokenizer(tmp_path / "tokenizer.json")
    for text in TEXTS:
        assert hf.encode(text).ids == gpt2_tok.encode(text) == back.encode(text), text


# ---- special tokens written in the text ------------------------------------------------------------
def test_wordpiece_special_tokens_in_text_both_policies(saved):
    tok, d = saved["wordpiece"]
    auto = transformers.AutoTokenizer.from_pretrained(d)
    text = "the cat [SEP] sat [MASK] on[CLS]the mat"
    with pytest.raises(DataError, match=r"special token '\[(SEP|MASK|CLS)\]'; pass allowed_special"):
        tok.encode(text)  # the safe default: text cannot smuggle in special tokens
    # Hugging Face recognises them (its default), tformer does with one argument
    assert tok.encode(text, allowed_special="all") == auto(text)["input_ids"]
    # or both read them as plain text (brackets and words)
    plain = tok.encode(text, disallowed_special=())
    assert plain == auto(text, split_special_tokens=True)["input_ids"]
    assert plain != tok.encode(text, allowed_special="all")


def test_bpe_special_tokens_in_text_both_policies(saved):
    tok, d = saved["bpe"]
    hf = raw(d)
    text = "end of one<|endoftext|>start of another <pad>"
    with pytest.raises(DataError, match="special token"):
        tok.encode(text)
    assert tok.encode(text, allowed_special="all") == hf.encode(text).ids
    hf.encode_special_tokens = True  # tokenizers' switch to read special tokens as text
    plain = tok.encode(text, disallowed_special=())
    assert plain == hf.encode(text).ids and plain != tok.encode(text, allowed_special="all")


# ---- kinds tformer does not implement ----------------------------------------------------------------
def write(tmp_path, tj, model_type: str | None = None):
    tj.save(str(tmp_path / "tokenizer.json"))
    if model_type:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return tmp_path


def test_unigram_is_refused_naming_it_and_the_model_type(tmp_path):
    from tokenizers import models

    tj = tokenizers.Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0))
    with pytest.raises(ConfigError) as err:
        load_tokenizer(write(tmp_path, tj, "t5"))
    message = str(err.value)
    assert "Unigram" in message and "'t5'" in message and "\n" not in message


def test_sentencepiece_style_bpe_is_refused(tmp_path):
    from tokenizers import decoders, models, pre_tokenizers

    tj = tokenizers.Tokenizer(models.BPE({"▁a": 0, "b": 1, "<unk>": 2}, [], unk_token="<unk>"))
    tj.pre_tokenizer = pre_tokenizers.Metaspace()
    tj.decoder = decoders.Metaspace()
    with pytest.raises(
        ConfigError, match=r"model type 'llama'.*BPE tokenizer with pre-tokenizer 'Metaspace'"
    ):
        load_tokenizer(write(tmp_path, tj, "llama"))


def test_wordpiece_with_another_pre_tokenizer_is_refused(tmp_path):
    from tokenizers import models, normalizers, pre_tokenizers

    tj = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tj.normalizer = normalizers.BertNormalizer()
    tj.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ConfigError, match="WordPiece tokenizer with pre-tokenizer 'Whitespace'"):
        load_tokenizer(write(tmp_path, tj))


def test_bpe_framing_with_bos_is_refused(tmp_path):
    """Llama 3 style: a TemplateProcessing that adds BOS, which tformer's BPE does not do."""
    tok = ByteLevelBPETokenizer.train(CORPUS, 300, special_tokens=["<|begin_of_text|>"])
    tok.save(tmp_path, format="hf")
    doc = json.loads((tmp_path / "tokenizer.json").read_text())
    doc["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {
            "<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [256], "tokens": ["<|begin_of_text|>"]}
        },
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"adds tokens around the text \(TemplateProcessing\)"):
        load_tokenizer(tmp_path)
