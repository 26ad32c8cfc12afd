"""Bad settings and inputs fail with one clear line, before any work is done."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.errors import TformerError
from tformer.generation import GenerationError


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tformer.build(
        tformer.ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    ).eval()


IDS = torch.tensor([[3, 4, 5]])


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
        (dict(do_sample=True, temperature=-1.0), "temperature must be > 0"),
        (dict(do_sample=True, top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(do_sample=True, top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(do_sample=True, top_k=0), "top_k must be an integer >= 1"),
        (dict(num_beams=0), "num_beams must be an integer >= 1"),
        (dict(max_new_tokens=0), "max_new_tokens must be a positive integer"),
        (dict(num_return_sequences=3, num_beams=2), "needs num_beams >= 3"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
        (dict(early_stopping="sometimes"), "early_stopping must be"),
        (dict(temprature=0.5), "unknown generation option 'temprature'"),
        (dict(stop_strings=["x"]), "stop_strings needs the tokenizer"),
    ],
)
def test_invalid_settings(tiny, options, message):
    with pytest.raises(GenerationError, match=message) as err:
        tiny.generate(IDS, max_new_tokens=options.pop("max_new_tokens", 2), **options)
    assert isinstance(err.value, TformerError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_greedy_ignores_sampling_only_settings(tiny):
    """As in Hugging Face, temperature/top-k/top-p only matter when sampling."""
    plain = tiny.generate(IDS, max_new_tokens=4)
    assert torch.equal(tiny.generate(IDS, max_new_tokens=4, temperature=0.0, top_k=0, top_p=0.0), plain)


def test_prompt_longer_than_context(tiny):
    with pytest.raises(GenerationError, match="longer than the model's context of 16"):
        tiny.generate(torch.randint(0, 32, (1, 17)), max_new_tokens=1)
    with pytest.raises(GenerationError, match="exceeds the model's context of 16"):
        tiny.generate(torch.randint(0, 32, (1, 10)), max_new_tokens=7)
    assert tiny.generate(torch.randint(0, 32, (1, 10)), max_new_tokens=6).shape == (1, 16)


def test_empty_prompt_needs_bos(tiny):
    with pytest.raises(GenerationError, match="empty prompt and the model has no bos_token_id"):
        tiny.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=2)
    with_bos = tformer.build(tiny.config.replace(bos_token_id=1))
    with_bos.load_state_dict(tiny.state_dict())
    out = with_bos.eval().generate(torch.zeros(2, 0, dtype=torch.long), max_new_tokens=3)
    assert out.shape == (2, 4) and (out[:, 0] == 1).all()  # starts from BOS, like HF


def test_bad_input_ids(tiny):
    with pytest.raises(GenerationError, match=r"\(batch, length\) tensor"):
        tiny.generate(torch.tensor([3, 4, 5]))
    with pytest.raises(GenerationError, match="integer token ids"):
        tiny.generate(torch.ones(1, 3))


def test_encoder_only_model_cannot_generate():
    enc = tformer.build("bert-tiny")
    with pytest.raises(GenerationError, match="encoder-only"):
        enc.generate(IDS)
