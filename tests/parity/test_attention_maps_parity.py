"""Attention maps computed beside SDPA equal Hugging Face's eager attention weights (which HF itself cannot
return under SDPA): GPT-2 (learned), Llama (RoPE, GQA), Mistral (sliding window, MQA), BERT, T5 (relative
bias, self + cross), BART (self + cross), with padding."""

from __future__ import annotations

import pytest
import torch

from tests.parity.helpers import hf_gpt2, hf_llama, hf_mistral, perturb, right_padded_batch, save_and_load
from tests.parity.test_encoder_parity import bert_config
from tests.parity.test_seq2seq_parity import bart, t5_v1_0

transformers = pytest.importorskip("transformers")

VOCAB = 96
WINDOW = 4
FAMILIES = {
    "gpt2": lambda: hf_gpt2(VOCAB),
    "llama": lambda: hf_llama(VOCAB),
    "mistral": lambda: hf_mistral(VOCAB, WINDOW),
    "bert": lambda: transformers.BertModel(bert_config()),
    "t5": t5_v1_0,
    "bart": bart,
}
PAD = {"gpt2": 0, "llama": 0, "mistral": 0, "bert": 0, "t5": 0, "bart": 1}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per family: the HF model with eager attention (weights) and tformer's load computing through SDPA."""
    torch.manual_seed(0)
    out = {}
    for name, make in FAMILIES.items():
        hf = make().eval()
        perturb(hf, std=0.3)  # sharp attention, so a misplaced mask or position would show
        ours = save_and_load(hf, tmp_path_factory.mktemp(name), attn_impl="sdpa").eval()
        hf.set_attn_implementation("eager")
        out[name] = (hf, ours)
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_maps_match_hf_eager_weights(models, family):
    hf, ours = models[family]
    ids, mask = right_padded_batch(VOCAB, [11, 7], pad_id=PAD[family], seed=3)
    kwargs = dict(input_ids=ids, attention_mask=mask, output_attentions=True)
    fields = ["attentions"]
    if ours.config.arch == "encoder_decoder":
        kwargs["decoder_input_ids"], _ = right_padded_batch(VOCAB, [6, 6], pad_id=PAD[family], seed=4)
        fields = ["encoder_attentions", "decoder_attentions", "cross_attentions"]
    with torch.no_grad():
        theirs, got = hf(**kwargs), ours(**kwargs)
    for field in fields:
        ref_maps = getattr(theirs, field)
        our_maps = getattr(got, "attentions" if field == "decoder_attentions" else field)
        assert len(our_maps) == len(ref_maps) > 0
        for w, ref in zip(our_maps, ref_maps):
            assert w.shape == ref.shape
            # rows of padded queries are arbitrary (fully masked): compare the real ones
            real = (
                mask.bool()
                if w.shape[2] == ids.shape[1]
                else torch.ones(w.shape[0], w.shape[2], dtype=torch.bool)
            )
            torch.testing.assert_close(w.transpose(1, 2)[real], ref.transpose(1, 2)[real], rtol=0, atol=1e-5)
