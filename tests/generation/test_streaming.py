"""Streaming: tokens come out step by step, equal to generate's; text pieces join to the decoded text."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.generation import TextStreamer, stream_generate, stream_text
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.tokenizers.stream import DecodeStream

TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3, "héllo wörld, ça va? 你好世界 " * 3]


@pytest.fixture(scope="module")
def tok():
    return ByteLevelBPETokenizer.train(TEXTS, vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(
        vocab_size=tok.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=64,
        eos_token_id=tok.eos_token_id,
    )
    return tformer.build(cfg).eval()


def test_stream_yields_each_step_and_equals_generate(model, tok):
    ids = torch.tensor([tok.encode("The quick"), tok.encode("héllo wö")[:3]])[:, :3]
    full = model.generate(ids, max_new_tokens=10, eos_token_id=[])
    stream = stream_generate(model, ids, max_new_tokens=10, eos_token_id=[])
    steps = list(stream)
    assert len(steps) == 10 and all(s.shape == (2,) for s in steps)
    assert torch.equal(torch.stack(steps, 1), full[:, 3:])
    assert torch.equal(stream.output.sequences, full)


def test_streamer_callback_sees_tokens_as_they_come(model, tok):
    seen: list[int] = []
    out = model.generate(
        torch.tensor([tok.encode("The")]),
        max_new_tokens=6,
        eos_token_id=[],
        streamer=lambda new: seen.append(int(new[0])),
    )
    assert seen == out[0, -6:].tolist()


def test_stopping_a_stream_early_frees_the_caches(model, tok):
    stream = stream_generate(model, torch.tensor([tok.encode("The quick")]), max_new_tokens=20)
    next(stream)
    assert model.decoder_stack().caching
    stream.close()
    assert not model.decoder_stack().caching
    assert not torch.is_inference_mode_enabled()  # inference mode does not leak into the consumer


def test_text_pieces_join_to_the_decoded_text(model, tok):
    ids = torch.tensor([tok.encode("héllo")])
    pieces = list(stream_text(model, tok, ids, max_new_tokens=24, do_sample=True, seed=3, eos_token_id=[]))
    out = model.generate(ids, max_new_tokens=24, do_sample=True, seed=3, eos_token_id=[])
    assert "".join(pieces) == tok.decode(out[0, ids.shape[1] :].tolist())
    written: list[str] = []
    streamer = TextStreamer(tok, written.append)
    model.generate(ids, max_new_tokens=24, do_sample=True, seed=3, eos_token_id=[], streamer=streamer)
    streamer.end()
    assert written == pieces


def test_incremental_decoder_holds_back_split_characters(tok):
    ids = tok.encode("你好 wörld")
    dec = DecodeStream(tok, skip_special_tokens=True)
    pieces = [dec.step(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == "你好 wörld"
    assert all("\ufffd" not in p for p in pieces)


def first_stop(tok, row: list[int], prompt_len: int, stop: str) -> int:
    """Length of ``row`` up to the token that completes ``stop`` (the text so far first contains it)."""
    return next(n for n in range(prompt_len + 1, len(row) + 1) if stop in tok.decode(row[:n]))


def test_stop_strings_end_generation_at_the_completing_token(model, tok):
    prompt = torch.tensor([tok.encode("The quick")])
    T = prompt.shape[1]
    free = model.generate(prompt, max_new_tokens=30, eos_token_id=[])
    stop = tok.decode(free[0, T:].tolist())[8:10]  # text the free run produces, absent from the prompt
    assert stop not in tok.decode(prompt[0].tolist())
    out = model.generate(prompt, max_new_tokens=30, eos_token_id=[], stop_strings=[stop], tokenizer=tok)
    assert torch.equal(out, free[:, : first_stop(tok, free[0].tolist(), T, stop)])


def test_stop_strings_pad_finished_rows_in_a_batch(model, tok):
    prompts = torch.tensor([tok.encode("The quick")[:2], tok.encode("héllo")[:2]])
    free = model.generate(prompts, max_new_tokens=20, eos_token_id=[])
    stop = tok.decode(free[0, 2:].tolist())[3:5]
    out = model.generate(
        prompts, max_new_tokens=20, eos_token_id=[], pad_token_id=0, stop_strings=stop, tokenizer=tok
    )
    ends = []
    for i in range(2):
        row = free[i].tolist()
        n = first_stop(tok, row, 2, stop) if stop in tok.decode(row) else len(row)
        ends.append(n)
        assert out[i, :n].tolist() == row[:n]
        assert (out[i, n:] == 0).all()  # a finished row is padded, not continued
    assert out.shape[1] == max(ends) and min(ends) < free.shape[1]


def test_stream_checks_inputs_before_the_first_step(model, tok):
    with pytest.raises(ValueError, match="longer than the model's context"):
        stream_generate(model, torch.zeros(1, 100, dtype=torch.long), max_new_tokens=2)
    assert not model.decoder_stack().caching
