"""GPT-2 parity: tformer on GPT-2's own files gives exactly tiktoken's and HF transformers' ids."""

from __future__ import annotations

import pytest
from _tok_cases import HARD_CASES


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_cases_match_tiktoken(gpt2_tok, tiktoken_gpt2, text):
    ids = gpt2_tok.encode(text, disallowed_special=())
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2_tok.decode(ids) == text


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_cases_match_hf(gpt2_tok, hf_gpt2, text):
    # HF always recognises <|endoftext|> in text: compare with tformer's "all special tokens allowed".
    ids = gpt2_tok.encode(text, allowed_special="all")
    assert ids == hf_gpt2(text)["input_ids"]


def test_special_token_ids_match(gpt2_tok, tiktoken_gpt2, hf_gpt2):
    text = "one<|endoftext|>two"
    assert gpt2_tok.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tok.eos_token_id == gpt2_tok.bos_token_id == 50256 == hf_gpt2.eos_token_id
    assert gpt2_tok.vocab_size == 50257 == tiktoken_gpt2.n_vocab == len(hf_gpt2)
    assert gpt2_tok.pad_token_id is None


@pytest.mark.slow
def test_tinyshakespeare_matches_tiktoken_and_hf(gpt2_tok, tiktoken_gpt2, hf_gpt2, shakespeare_text):
    ids = gpt2_tok.encode(shakespeare_text)
    assert ids == tiktoken_gpt2.encode_ordinary(shakespeare_text)
    assert ids == hf_gpt2(shakespeare_text)["input_ids"]
    assert gpt2_tok.decode(ids) == shakespeare_text


def test_long_chunks_use_heap_merge_with_same_result(gpt2_tok, tiktoken_gpt2):
    # Chunks over 256 bytes take the heap path: a letter run, a digit run, a whitespace run, emoji.
    for text in ["ab" * 400, "x" + "1234567890" * 40, "\n" * 600, "🎉" * 100, "é" * 300]:
        assert gpt2_tok.encode(text) == tiktoken_gpt2.encode_ordinary(text)


def test_invalid_utf8_decodes_to_replacement(gpt2_tok, tiktoken_gpt2):
    ids = gpt2_tok.encode("😀")  # 4 bytes, several ids
    assert len(ids) > 1
    partial = ids[:-1]
    assert gpt2_tok.decode(partial) == tiktoken_gpt2.decode(partial)
    assert "\ufffd" in gpt2_tok.decode(partial)
    lone_byte = gpt2_tok.token_to_id(b"\xff")
    assert gpt2_tok.decode([lone_byte]) == "\ufffd"
