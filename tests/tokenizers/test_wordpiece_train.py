"""WordPiece training against Hugging Face ``tokenizers``' WordPieceTrainer on corpora the tests make.

Hugging Face's trainer is not deterministic: it numbers the ``##`` characters in the iteration order of a hash
map of words and breaks equal pair counts by those numbers (see ``tformer.tokenizers.wordpiece_train``). So:
on a corpus whose merges are decided by counts alone (words of Zipf frequencies) every Hugging Face run learns
tformer's vocabulary and merges it in the same order, with only the ``##`` characters numbered differently; on
a corpus full of ties (each word once) Hugging Face's runs disagree with each other, and what can be compared
is compared: special tokens, alphabet, ``##`` characters, size, and encoding with a fixed vocabulary.
"""

from __future__ import annotations

import random

import pytest

from tformer.errors import ConfigError, DataError
from tformer.tokenizers import WordPieceTokenizer, load_tokenizer, train_wordpiece
from tformer.tokenizers.wordpiece import BERT_SPECIALS

tokenizers = pytest.importorskip("tokenizers")


def hf_train(path, vocab_size: int, **options) -> dict[str, int]:
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(BERT_SPECIALS), show_progress=False, **options
    )
    tok.train([str(path)], trainer)
    return tok.get_vocab()


def zipf_corpus(seed: int = 0) -> str:
    """Sixty made-up words at Zipf frequencies (plus a little noise), eight to a line, shuffled."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "mu", "sen", "do", "la", "pe", "qui", "zor", "an", "el"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(60)]
    tokens = [
        w.capitalize() if r % 5 == 0 else w
        for r, w in enumerate(words)
        for _ in range(int(1000 / (r + 1) ** 1.1) + r % 7)
    ]
    rng.shuffle(tokens)
    return "\n".join(" ".join(tokens[i : i + 8]) + "," for i in range(0, len(tokens), 8)) + "\n"


def tie_corpus(seed: int = 1) -> str:
    """Three hundred random words over eight letters, each about once: pair counts tie everywhere."""
    rng = random.Random(seed)
    return (
        " ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(300)) + "\n"
    )


def merged_in_order(vocab: dict[str, int]) -> list[str]:
    """The tokens merges created, in id (creation) order: neither special tokens nor (## )characters."""
    return [
        t
        for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])
        if t not in BERT_SPECIALS and len(t.removeprefix("##")) > 1
    ]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("wordpiece-corpora")
    (d / "zipf.txt").write_text(zipf_corpus(), encoding="utf-8")
    (d / "ties.txt").write_text(tie_corpus(), encoding="utf-8")
    return d


@pytest.mark.parametrize("vocab_size", [80, 140])
def test_counts_decide_so_every_hf_run_learns_our_vocabulary(corpora, vocab_size):
    ours = WordPieceTokenizer.train_from_files(corpora / "zipf.txt", vocab_size)
    for _ in range(3):  # several runs: each numbers its ## characters differently
        theirs = hf_train(corpora / "zipf.txt", vocab_size)
        assert set(theirs) == set(ours.vocab)
        assert merged_in_order(theirs) == merged_in_order(ours.vocab)
        # special tokens and the alphabet (sorted by code point) get the same ids; only ## characters differ
        for token, i in ours.vocab.items():
            if not token.startswith("##") and len(token) == 1 or token in BERT_SPECIALS:
                assert theirs[token] == i, token


def test_where_counts_tie_compare_what_is_determined(corpora):
    path = corpora / "ties.txt"
    ours = WordPieceTokenizer.train_from_files(path, 120)
    assert ours.vocab == WordPieceTokenizer.train_from_files(path, 120).vocab  # tformer: deterministic
    runs = [hf_train(path, 120) for _ in range(3)]

    def initial(vocab):  # specials and characters: the part before any merge
        return {t for t in vocab if t in BERT_SPECIALS or len(t.removeprefix("##")) == 1}

    for theirs in runs:
        assert len(theirs) == len(ours.vocab)
        assert initial(theirs) == initial(ours.vocab)
        assert {t: theirs[t] for t in BERT_SPECIALS} == {t: ours.vocab[t] for t in BERT_SPECIALS}


def test_encoding_with_a_trained_vocabulary_matches_hf(corpora):
    """The vocabulary Hugging Face learned, given to tformer's WordPiece, encodes as Hugging Face does."""
    from tokenizers import models, normalizers, pre_tokenizers

    vocab = hf_train(corpora / "ties.txt", 120)
    hf = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    ours = WordPieceTokenizer(vocab)
    for text in tie_corpus(seed=7).split()[:50] + ["Abc, DEF-gh! zzz", "ach bad"]:
        assert ours.encode(text, add_special_tokens=False) == hf.encode(text).ids, text


def test_limit_alphabet_keeps_the_most_frequent_characters(corpora):
    """Dropping characters glues what was around them, which makes ties: compare the alphabet and the size."""
    ours = WordPieceTokenizer.train_from_files(corpora / "zipf.txt", 100, limit_alphabet=8)
    theirs = hf_train(corpora / "zipf.txt", 100, limit_alphabet=8)

    def characters(vocab):
        return {t for t in vocab if len(t.removeprefix("##")) == 1}

    assert characters(ours.vocab) == characters(theirs) and len({t for t in ours.vocab if len(t) == 1}) == 8
    assert len(ours.vocab) == len(theirs)


def test_trained_tokenizer_round_trips_both_formats(tmp_path):
    tok = train_wordpiece([zipf_corpus()], 100)
    for fmt in ("tformer", "hf"):
        back = load_tokenizer(tok.save(tmp_path / fmt, format=fmt))
        assert back.vocab == tok.vocab and back.encode("kato rimu") == tok.encode("kato rimu")


def test_bad_training_input():
    with pytest.raises(ConfigError, match="hold no unknown token"):
        train_wordpiece(["some text"], 50, special_tokens=["[CLS]", "[SEP]"])
    with pytest.raises(DataError, match="no training text"):
        train_wordpiece(["", "   "], 50)


def test_cli_trains_wordpiece(corpora, tmp_path, capsys):
    from tformer.cli import main

    out = tmp_path / "wp"
    code = main(
        [
            "tokenizer",
            "train",
            "--kind",
            "wordpiece",
            "--data",
            str(corpora / "zipf.txt"),
            "--vocab-size",
            "90",
        ]
        + ["--out", str(out), "--hf", "--no-progress"]
    )
    assert code == 0 and "saved wordpiece tokenizer (vocab_size 90)" in capsys.readouterr().out
    assert {"tformer_tokenizer.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert load_tokenizer(out).vocab == WordPieceTokenizer.train_from_files(corpora / "zipf.txt", 90).vocab
