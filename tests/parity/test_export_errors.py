"""Export's refusals: a component without a Hugging Face equivalent, a directory holding another model; each a
one-line error, with nothing written or overwritten. No transformers needed."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.errors import CheckpointError, ConfigError
from tformer.interop.export import architecture_for
from tformer.models.formats import SAVE_FORMATS


def tiny(preset: str, **overrides):
    return tformer.build(preset, **overrides)


@pytest.mark.parametrize(
    "preset, overrides, architecture, component",
    [
        ("gpt-tiny", dict(position="alibi"), "GPT2LMHeadModel", "position='alibi'"),
        ("gpt-tiny", dict(norm="rmsnorm"), "GPT2LMHeadModel", "norm='rmsnorm'"),
        ("gpt-tiny", dict(n_kv_heads=2), "GPT2LMHeadModel", "n_kv_heads=2"),
        ("llama-tiny", dict(norm="layernorm"), "LlamaForCausalLM", "norm='layernorm'"),
        ("llama-tiny", dict(attn_bias=True), "LlamaForCausalLM", "attn_out_bias=False"),
        ("mistral-tiny", dict(attn_bias=True), "MistralForCausalLM", "attn_bias=True"),
        ("bert-tiny", dict(norm_placement="pre"), "BertForMaskedLM", "norm_placement='pre'"),
        ("bert-tiny", dict(pooler=True), "BertForMaskedLM", "pooler=True"),
        (
            "t5-tiny",
            dict(gated_ffn=True, activation="gelu"),
            "T5ForConditionalGeneration",
            "gated exact-GELU",
        ),
        ("transformer-tiny", {}, "BartForConditionalGeneration", "position='sinusoidal'"),
    ],
)
def test_component_without_equivalent_is_named(tmp_path, preset, overrides, architecture, component):
    model = tiny(preset, **overrides)
    target = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        model.save_pretrained(target, format="hf")
    message = str(err.value)
    assert architecture in message and component in message and "\n" not in message
    assert not target.exists()  # refused before anything was written


def test_architecture_follows_the_components():
    assert architecture_for(tiny("gpt-tiny").config) == "GPT2LMHeadModel"
    assert architecture_for(tiny("llama-tiny").config) == "LlamaForCausalLM"
    assert architecture_for(tiny("mistral-tiny").config) == "MistralForCausalLM"
    assert architecture_for(tiny("mixtral-tiny").config) == "MixtralForCausalLM"
    assert architecture_for(tiny("bert-tiny").config) == "BertForMaskedLM"
    assert architecture_for(tiny("bert-tiny", head="classification", pooler=True).config) == (
        "BertForSequenceClassification"
    )
    assert architecture_for(tiny("t5-tiny").config) == "T5ForConditionalGeneration"
    assert architecture_for(tiny("bart-tiny").config) == "BartForConditionalGeneration"
    # an imported model goes back to the class it came from
    cfg = tiny("llama-tiny").config.replace(extra={"hf_architecture": "MistralForCausalLM"})
    assert architecture_for(cfg) == "MistralForCausalLM"


def test_directory_with_another_model_is_refused_and_kept(tmp_path):
    tiny("gpt-tiny").save_pretrained(tmp_path)  # tformer's format: config.json + model.safetensors
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(CheckpointError, match=r"already holds a model \(config.json\); pass overwrite=True"):
        tiny("llama-tiny").save_pretrained(tmp_path, format="hf")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_replaces_the_model_and_removes_its_other_files(tmp_path):
    tiny("gpt-tiny").save_pretrained(tmp_path)
    (tmp_path / "tformer_tokenizer.json").write_text("{}")  # the old model's tokenizer
    (tmp_path / "notes.txt").write_text("mine")  # not a model file: kept
    model = tiny("llama-tiny")
    model.save_pretrained(tmp_path, format="hf", overwrite=True)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.json", "model.safetensors", "generation_config.json", "notes.txt"}
    back = tformer.from_pretrained(tmp_path)
    assert back.config.extra["hf_architecture"] == "LlamaForCausalLM"
    assert torch.equal(back.lm_head.weight, model.lm_head.weight)


def test_save_formats_are_a_registry():
    assert {"tformer", "hf"} <= set(SAVE_FORMATS)  # "hf" registered once tformer is imported
    with pytest.raises(ConfigError, match="unknown save format 'onnx'; choose one of hf, tformer"):
        tiny("gpt-tiny").save_pretrained("unused", format="onnx")


def test_generation_defaults_travel_with_both_formats(tmp_path):
    model = tiny("bart-tiny")
    model.generation_config = tformer.generation.GenerationConfig(num_beams=3, forced_bos_token_id=0)
    for fmt in ("tformer", "hf"):
        model.save_pretrained(tmp_path / fmt, format=fmt)
        back = tformer.from_pretrained(tmp_path / fmt)
        assert back.generation_config.num_beams == 3 and back.generation_config.forced_bos_token_id == 0
