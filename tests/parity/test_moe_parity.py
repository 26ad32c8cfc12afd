"""Mixture-of-experts parity with Hugging Face Mixtral."""

from functools import partial

import pytest
import torch

from tests.parity.helpers import assert_close_scaled, hf_mixtral, load_families, right_padded_batch

transformers = pytest.importorskip("transformers")

VOCAB = 80


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    families = load_families({"mixtral": partial(hf_mixtral, VOCAB, experts=4)}, tmp_path_factory)
    hf, _, loads = families["mixtral"]
    return hf, loads


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_mixtral_logits_match(mixtral, impl):
    hf, ours = mixtral
    assert ours[impl].config.n_experts == 4
    ids, mask = right_padded_batch(VOCAB, [10, 6], pad_id=0)
    with torch.no_grad():
        assert_close_scaled(
            ours[impl](ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits, mask
        )


def test_fused_in_memory_expert_layout_is_accepted(mixtral, tmp_path):
    """transformers 5 keeps experts fused in memory; a raw state_dict dump uses that layout."""
    from safetensors.torch import save_file

    import tformer

    hf, ours = mixtral
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any("gate_up_proj" in k for k in sd)
    hf.config.save_pretrained(tmp_path)
    save_file(sd, tmp_path / "model.safetensors")
    model = tformer.from_pretrained(tmp_path)
    ids, _ = right_padded_batch(VOCAB, [9], pad_id=0)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ours["sdpa"](ids).logits)
