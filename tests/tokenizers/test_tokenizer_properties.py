"""Property tests: decode(encode(s)) == s for any str, and encode never raises without special tokens."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tformer.tokenizers import CharTokenizer, train_bpe

# Any code point except surrogates (a Python str holding one cannot be UTF-8 encoded, and no text has one).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
SETTINGS = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_BPE = train_bpe(["Hello world! It's 2024, café 中文 🙂 \n\t  " * 30], 400, special_tokens=["<|endoftext|>"])
_CL100K = train_bpe(["Hello world! It's 2024, café 中文 🙂 \n\t  " * 30], 350, pattern="cl100k")
_CHARS = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ABC\n.,!?é中", unknown="replace")


def _no_special(s: str) -> bool:
    return "<|endoftext|>" not in s and "<unk>" not in s


@SETTINGS
@given(TEXT.filter(_no_special))
def test_bpe_round_trip(s):
    assert _BPE.decode(_BPE.encode(s)) == s


@settings(max_examples=400, deadline=None)
@given(TEXT.filter(_no_special))
def test_cl100k_bpe_round_trip(s):
    assert _CL100K.decode(_CL100K.encode(s)) == s


@settings(max_examples=300, deadline=None)
@given(TEXT.filter(_no_special))
def test_gpt2_round_trip(gpt2_tok, s):
    assert gpt2_tok.decode(gpt2_tok.encode(s)) == s


@SETTINGS
@given(TEXT.filter(_no_special))
def test_char_round_trip_with_unknown_policy(s):
    expected = "".join(c if c in _CHARS.chars else "<unk>" for c in s)
    assert _CHARS.decode(_CHARS.encode(s)) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(_CHARS.chars), max_size=100))
def test_char_round_trip_on_its_alphabet(s):
    assert _CHARS.decode(_CHARS.encode(s)) == s


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, _BPE.vocab_size - 1), max_size=30))
def test_bpe_decode_of_any_ids_never_raises(ids):
    text = _BPE.decode(ids)
    assert isinstance(text, str)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, _BPE.vocab_size - 1), max_size=20))
def test_decode_stream_equals_decode(ids):
    stream = _BPE.decode_stream()
    assert stream.extend(ids) + stream.flush() == _BPE.decode(ids)


@pytest.mark.parametrize("tok", [_BPE, _CHARS], ids=["bpe", "char"])
def test_special_text_is_an_error_by_default(tok):
    from tformer.errors import DataError

    special = next(iter(tok.special_tokens))
    with pytest.raises(DataError):
        tok.encode(f"x{special}y")
