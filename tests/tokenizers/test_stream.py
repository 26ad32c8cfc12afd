"""DecodeStream, the one incremental decoder (generation streams with it): for every kind of tokenizer the
pieces arrive as soon as they are complete and join to ``decode(ids)``."""

from __future__ import annotations

import pytest
from _tok_cases import HARD_CASES

from tformer.tokenizers import ByteLevelBPETokenizer, CharTokenizer, train_bpe
from tformer.tokenizers.stream import DecodeStream

CORPUS = "the cat sat on the mat. café 中文 🙂 naïve\n" * 20


@pytest.fixture(scope="module")
def bpe() -> ByteLevelBPETokenizer:
    return train_bpe([CORPUS], 300, special_tokens=["<|endoftext|>"])


def pieces(stream: DecodeStream, ids: list[int]) -> list[str]:
    return [stream.step(i) for i in ids] + [stream.flush()]


@pytest.mark.parametrize("text", HARD_CASES)
def test_byte_level_pieces_join_to_the_text_and_never_split_a_character(bpe, text):
    out = pieces(DecodeStream(bpe), bpe.encode(text, disallowed_special=()))
    assert "".join(out) == text
    assert all("\ufffd" not in p for p in out)


def test_a_character_split_over_ids_comes_out_with_its_last_byte(bpe):
    ids = [bpe.token_to_id(bytes([b])) for b in "é🙂".encode()]  # one id per byte: c3 a9 f0 9f 99 82
    assert pieces(DecodeStream(bpe), ids) == ["", "é", "", "", "", "🙂", ""]


def test_special_tokens_are_kept_or_skipped(bpe):
    eos = bpe.special_tokens["<|endoftext|>"]
    ids = bpe.encode("the cat") + [eos] + bpe.encode(" sat")
    assert "".join(pieces(DecodeStream(bpe), ids)) == "the cat<|endoftext|> sat"
    assert "".join(pieces(DecodeStream(bpe, skip_special_tokens=True), ids)) == "the cat sat"


def test_characters_stream_one_by_one():
    tok = CharTokenizer.train("héllo wörld", special_tokens=["<|endoftext|>"])
    ids = tok.encode("wörld héllo") + [tok.eos_token_id]
    out = pieces(DecodeStream(tok, skip_special_tokens=True), ids)
    assert out == list("wörld héllo") + ["", ""]
    assert "".join(pieces(DecodeStream(tok), ids)) == "wörld héllo<|endoftext|>"


def test_flush_emits_an_unfinished_character_and_starts_afresh(bpe):
    stream = DecodeStream(bpe)
    lead = bpe.token_to_id(bytes([0xF0]))
    assert stream.step(lead) == "" and stream.flush() == "\ufffd"
    assert stream.extend(bpe.encode("cat")) == "cat"


def test_context_keeps_spaces_that_decoding_one_id_alone_would_drop():
    """SentencePiece-style tokens ("▁cat") lose their leading space when decoded alone; the window of the
    previous piece keeps it (here with a Hugging Face ``tokenizers`` tokenizer, built in memory)."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<unk>": 0, "▁the": 1, "▁cat": 2, "▁sat": 3, "s": 4}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.decoder = tokenizers.decoders.Metaspace()
    ids = [1, 2, 4, 3]
    assert [tok.decode([i]) for i in ids] == ["the", "cat", "s", "sat"]
    out = pieces(DecodeStream(tok), ids)
    assert out == ["the", " cat", "s", " sat", ""] and "".join(out) == tok.decode(ids)


def test_a_decode_without_the_keyword_still_streams():
    class Plain:
        """A tokenizer whose decode takes only ids (as tiktoken's)."""

        def decode(self, ids: list[int]) -> str:
            return "".join(chr(96 + i) for i in ids)

    assert pieces(DecodeStream(Plain(), skip_special_tokens=True), [1, 2, 3]) == ["a", "b", "c", ""]
