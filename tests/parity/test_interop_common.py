"""The shared converter pieces and the registry, on hand-made tensors (no transformers needed)."""

from __future__ import annotations

import pytest
import torch

from tformer.config import ModelConfig
from tformer.errors import CheckpointError
from tformer.interop import hf
from tformer.interop.common import Converter, fuse_encoder_decoder_attention, untie_stored_head


def _seq2seq_config(n_layers: int, n_decoder_layers: int) -> ModelConfig:
    return ModelConfig(
        arch="encoder_decoder",
        vocab_size=16,
        d_model=8,
        n_layers=n_layers,
        n_decoder_layers=n_decoder_layers,
        n_heads=2,
        d_ff=16,
    )


def test_fuse_encoder_decoder_attention_fuses_every_stack_and_the_cross_attention():
    config = _seq2seq_config(n_layers=2, n_decoder_layers=1)
    tensors = {}
    for stack, n in (("encoder", 2), ("decoder", 1)):
        for i in range(n):
            for k, p in enumerate("qkv"):
                tensors[f"{stack}.{i}.self.{p}.weight"] = torch.full((8, 8), float(k))
    for k, p in enumerate("qkv"):
        tensors[f"decoder.0.cross.{p}.weight"] = torch.full((8, 8), 10.0 + k)
    out = fuse_encoder_decoder_attention(
        tensors, config, "{stack}.{i}.self.{p}", "{stack}.{i}.qkv", "decoder.{i}.cross.{p}", "decoder.{i}.kv"
    )
    # the cross-attention query stays apart: tformer projects it from the decoder, k/v from the memory
    assert sorted(out) == [
        "decoder.0.cross.q.weight",
        "decoder.0.kv.weight",
        "decoder.0.qkv.weight",
        "encoder.0.qkv.weight",
        "encoder.1.qkv.weight",
    ]
    assert out["encoder.1.qkv.weight"].shape == (24, 8)
    assert out["encoder.1.qkv.weight"][:, 0].tolist() == [0.0] * 8 + [1.0] * 8 + [2.0] * 8  # q, k, v rows
    assert out["decoder.0.kv.weight"][:, 0].tolist() == [11.0] * 8 + [12.0] * 8
    del tensors["decoder.0.self.v.weight"]
    with pytest.raises(CheckpointError, match="missing weight 'decoder.0.self.v.weight'"):
        fuse_encoder_decoder_attention(
            tensors,
            config,
            "{stack}.{i}.self.{p}",
            "{stack}.{i}.qkv",
            "decoder.{i}.cross.{p}",
            "decoder.{i}.kv",
        )


def test_untie_stored_head_only_for_a_distinct_stored_head():
    tied = ModelConfig(arch="decoder", vocab_size=16, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    emb = torch.randn(16, 8)
    same = {"wte.weight": emb, "lm_head.weight": emb.clone()}
    other = {"wte.weight": emb, "lm_head.weight": emb + 1}
    names = ("transformer.wte.weight", "wte.weight")
    assert untie_stored_head(tied, same, "lm_head.weight", *names).tie_word_embeddings
    assert untie_stored_head(tied, {"wte.weight": emb}, "lm_head.weight", *names).tie_word_embeddings
    assert not untie_stored_head(tied, other, "lm_head.weight", *names).tie_word_embeddings
    # the first embedding name present is the one compared
    both = {"transformer.wte.weight": emb + 1, **other}
    assert untie_stored_head(tied, both, "lm_head.weight", *names).tie_word_embeddings
    untied = tied.replace(tie_word_embeddings=False)
    assert untie_stored_head(untied, same, "lm_head.weight", *names) is untied


def test_registry_maps_each_architecture_to_a_converter():
    assert all(isinstance(c, Converter) for c in hf.CONVERTERS.values())
    # architectures of one family share its converter
    assert hf.CONVERTERS["BertModel"] is hf.CONVERTERS["BertForMaskedLM"]
    assert hf.CONVERTERS["LlamaForCausalLM"] is hf.CONVERTERS["MistralForCausalLM"]
    raw = {"architectures": ["LlamaForCausalLM"], "vocab_size": 32, "hidden_size": 16}
    raw |= {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 24}
    arch, conv = hf.converter(raw)
    assert arch == "LlamaForCausalLM" and conv is hf.CONVERTERS[arch]
    assert hf.config_from_hf(raw).position == "rope"
