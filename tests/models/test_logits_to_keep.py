"""``logits_to_keep``: the LM head scores only the positions asked for, with the same values as a full pass."""

import pytest
import torch

import tformer
from tformer.models import EncoderDecoderLM

DECODERS = ["gpt-tiny", "llama-tiny", "mistral-tiny", "mixtral-tiny"]
SEQ2SEQ = ["t5-tiny", "bart-tiny", "transformer-tiny"]


def logits(model, ids, mask, **kw) -> torch.Tensor:
    """Decoder-only: forward; encoder-decoder: decode (the door generation uses) against the source's memory."""
    with torch.no_grad():
        if isinstance(model, EncoderDecoderLM):
            return model.decode(ids, model.encode(ids, mask), mask, **kw).logits
        return model(ids, mask, **kw).logits


@pytest.mark.parametrize("preset", DECODERS + SEQ2SEQ)
def test_keeping_k_positions_equals_the_last_k_of_the_full_logits(preset):
    torch.manual_seed(0)
    model = tformer.build(preset).eval()
    ids = torch.randint(0, 500, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # padding must not change which positions are kept
    full = logits(model, ids, mask)
    assert full.shape == (2, 7, 512)
    assert torch.equal(logits(model, ids, mask, logits_to_keep=0), full)  # 0 keeps every position
    for k in (1, 3, 7, 9):  # more than T keeps all, as in Hugging Face
        kept = logits(model, ids, mask, logits_to_keep=k)
        assert kept.shape == (2, min(k, 7), 512)
        torch.testing.assert_close(kept, full[:, -k:], rtol=1e-5, atol=1e-6)
    index = torch.tensor([0, 4, 5])
    torch.testing.assert_close(
        logits(model, ids, mask, logits_to_keep=index), full[:, index], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("preset", ["llama-tiny", "t5-tiny"])
def test_cached_prefill_with_one_kept_position_equals_the_full_pass(preset):
    torch.manual_seed(0)
    model = tformer.build(preset).eval()
    ids = torch.randint(0, 500, (2, 6))
    full = logits(model, ids, None)
    model.setup_caches(2, 8)
    with torch.no_grad():
        if isinstance(model, EncoderDecoderLM):
            out = model.decode(ids, model.encode(ids), input_pos=torch.arange(6), logits_to_keep=1)
        else:
            out = model(ids, input_pos=torch.arange(6), logits_to_keep=1)
    model.clear_caches()
    assert out.logits.shape == (2, 1, 512)
    torch.testing.assert_close(out.logits, full[:, -1:], rtol=1e-5, atol=1e-6)


def test_hidden_states_stay_whole():
    model = tformer.build("gpt-tiny").eval()
    out = model(torch.randint(0, 500, (1, 5)), logits_to_keep=1, output_hidden_states=True)
    assert out.logits.shape == (1, 1, 512) and out.last_hidden_state.shape == (1, 5, 64)


@pytest.mark.parametrize(
    "bad, message",
    [
        (-1, "logits_to_keep must be an int >= 0"),
        (1.5, "logits_to_keep must be an int >= 0"),
        (torch.tensor([[0, 1]]), "1-D integer positions"),
        (torch.tensor([0.0]), "1-D integer positions"),
    ],
)
def test_invalid_logits_to_keep_is_a_clear_error(bad, message):
    model = tformer.build("gpt-tiny").eval()
    with pytest.raises(ValueError, match=message):
        model(torch.randint(0, 500, (1, 5)), logits_to_keep=bad)
