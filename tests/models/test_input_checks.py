"""Inputs a model cannot represent fail in ``forward`` with the CLI's clear words, never a raw IndexError."""

import pytest
import torch

import tformer
from tformer.errors import InputError, TformerError

FAMILIES = ["gpt-tiny", "llama-tiny", "bert-tiny", "t5-tiny", "bart-tiny", "transformer-tiny"]


def _call(model, ids, **kwargs):
    if model.config.arch == "encoder_decoder":
        return model(ids, decoder_input_ids=torch.zeros(1, 2, dtype=torch.long), **kwargs)
    return model(ids, **kwargs)


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    torch.manual_seed(0)
    return tformer.build(request.param, max_seq_len=16).eval()


@pytest.mark.parametrize("bad", [512, 10**6, -1])
def test_ids_outside_the_vocabulary(model, bad):
    ids = torch.tensor([[1, 2, bad, 3]])
    with pytest.raises(
        InputError, match=rf"token id {bad} is outside the model's vocabulary \(ids 0..511\)"
    ) as e:
        _call(model, ids)
    assert isinstance(e.value, TformerError) and isinstance(e.value, ValueError)


def test_input_longer_than_the_context(model):
    ids = torch.ones(1, 17, dtype=torch.long)
    if model.config.position not in ("learned", "sinusoidal"):  # relative positions: no table to run past
        assert _call(model, ids).logits.shape[-1] == 512
        return
    with pytest.raises(InputError, match="the input has 17 tokens, longer than the model's context of 16"):
        _call(model, ids)
    assert _call(model, ids[:, :16]).logits is not None


def test_positions_past_the_context_and_token_types():
    torch.manual_seed(0)
    gpt = tformer.build("gpt-tiny", max_seq_len=16).eval()
    with pytest.raises(InputError, match="position 16 is longer than the model's context of 16"):
        gpt(torch.ones(1, 2, dtype=torch.long), position_ids=torch.tensor([[15, 16]]))
    bert = tformer.build("bert-tiny", max_seq_len=16).eval()
    with pytest.raises(InputError, match=r"token type id 2 is outside the model's token types \(ids 0..1\)"):
        bert(torch.ones(1, 2, dtype=torch.long), token_type_ids=torch.tensor([[0, 2]]))
