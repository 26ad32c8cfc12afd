"""LoRA layers: zero-B identity, merge == unmerged, merge/unmerge round trip, gradients, slicing, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tformer
from tformer.errors import ConfigError
from tformer.peft import LoraConfig, LoraLinear, add_lora, lora_layers, merge_lora, unload_lora, unmerge_lora
from tformer.peft.lora import sites_of


def tiny(preset: str = "llama-tiny", **overrides) -> nn.Module:
    torch.manual_seed(0)
    return tformer.build(preset, vocab_size=64, **overrides).eval()


def ids(n: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(0, 64, (n, t), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def randomize_adapters(model: nn.Module, std: float = 0.2) -> None:
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.normal_(0.0, std)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).logits


PRESETS = ["llama-tiny", "gpt-tiny", "bert-tiny", "t5-tiny"]


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if model.config.arch == "encoder_decoder":
        return model(x, decoder_input_ids=x[:, :4]).logits
    out = model(x)
    return out.logits if out.logits is not None else out.last_hidden_state


@pytest.mark.parametrize("preset", PRESETS)
def test_zero_b_leaves_outputs_unchanged(preset):
    model = tiny(preset)
    x = ids()
    with torch.no_grad():
        before = run(model, x)
        add_lora(model, LoraConfig(r=4, target_modules=["q", "v", "o", "up", "down"]))
        after = run(model, x)
    assert lora_layers(model)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("preset", PRESETS)
def test_merged_equals_unmerged_and_unmerge_restores(preset):
    model = tiny(preset)
    x = ids()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        base = run(model, x)
    add_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v", "down"]))
    randomize_adapters(model)
    with torch.no_grad():
        unmerged = run(model, x)
        assert (unmerged - base).abs().max() > 1e-2  # the adapters do something
        merge_lora(model)
        merged = run(model, x)
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
        unmerge_lora(model)
        torch.testing.assert_close(run(model, x), unmerged, rtol=0, atol=1e-5)
    for layer in lora_layers(model).values():  # the base weights come back up to rounding
        layer.merge()
        layer.unmerge()
    unload_lora(model, merge=False)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, base_state[k], rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(run(model, x), base, rtol=0, atol=1e-5)


def test_merging_twice_is_refused():
    model = add_lora(tiny(), LoraConfig(r=2))
    merge_lora(model)
    with pytest.raises(ConfigError, match="already merged"):
        merge_lora(model)
    unmerge_lora(model)
    with pytest.raises(ConfigError, match="not merged"):
        unmerge_lora(model)


def test_unload_merges_into_a_plain_model():
    model = add_lora(tiny(), LoraConfig(r=2, target_modules=["q", "v", "gate"]))
    randomize_adapters(model)
    x = ids()
    want = logits(model, x)
    unload_lora(model)
    assert not lora_layers(model) and not any("lora" in k for k in model.state_dict())
    torch.testing.assert_close(logits(model, x), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt-tiny"])
def test_only_adapter_parameters_get_gradients(preset):
    model = add_lora(tiny(preset).train(), LoraConfig(r=4, target_modules=["q", "v"]))
    randomize_adapters(model)
    model(ids()).logits.square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name
        if p.grad is not None:
            assert p.grad.abs().sum() > 0, name


def test_q_and_v_update_only_their_rows_of_the_fused_projection():
    model = tiny("llama-tiny")  # grouped-query: q rows and k/v rows differ in size
    cfg = model.config
    add_lora(model, LoraConfig(r=3, target_modules=["q", "v"]))
    layer = model.body.layers[0].attn.qkv_proj
    assert isinstance(layer, LoraLinear)
    qd, kvd = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    assert layer.rows == {"q": (0, qd), "v": (qd + kvd, qd + 2 * kvd)}
    randomize_adapters(model)
    x = torch.randn(2, 5, cfg.d_model)
    with torch.no_grad():
        delta = layer(x) - layer.base_layer(x)
    assert delta[..., :qd].abs().min() > 0
    assert delta[..., qd : qd + kvd].abs().max() == 0  # k untouched
    assert delta[..., qd + kvd :].abs().min() > 0
    # the readable forward equals the dense update W + scaling * [B_q A_q; 0; B_v A_v]
    with torch.no_grad():
        dense = torch.zeros_like(layer.base_layer.weight)
        for name, (a, b) in layer.rows.items():
            dense[a:b] = layer.delta_weight(name)
        torch.testing.assert_close(layer(x), layer.base_layer(x) + x @ dense.T, rtol=0, atol=1e-5)


def test_cross_attention_targets():
    model = add_lora(tiny("t5-tiny"), LoraConfig(r=2, target_modules=["q", "k", "v", "o"]))
    names = {
        (s.module.rsplit(".", 2)[-2] + "." + s.module.rsplit(".", 1)[-1], s.name) for s in sites_of(model)
    }
    assert ("cross_attn.q_proj", "default") in names
    assert ("cross_attn.kv_proj", "k") in names and ("cross_attn.kv_proj", "v") in names
    assert ("attn.qkv_proj", "q") in names and ("attn.o_proj", "default") in names


def test_hugging_face_names_are_aliases():
    a = sites_of(add_lora(tiny(), LoraConfig(target_modules=["q_proj", "v_proj", "down_proj"])))
    b = sites_of(add_lora(tiny(), LoraConfig(target_modules=["q", "v", "down"])))
    assert a == b


def test_bias_lora_only_trains_the_adapted_rows():
    model = add_lora(tiny("gpt-tiny").train(), LoraConfig(r=2, target_modules=["q"], bias="lora_only"))
    randomize_adapters(model)
    model(ids()).logits.square().mean().backward()
    layer = model.body.layers[0].attn.qkv_proj
    grad = layer.base_layer.bias.grad
    q_rows = layer.rows["q"][1]
    assert grad[:q_rows].abs().sum() > 0 and grad[q_rows:].abs().max() == 0
    assert not model.body.layers[0].attn.o_proj.bias.requires_grad


def test_modules_to_save_train_in_full():
    model = add_lora(
        tiny("bert-tiny", head="classification", num_labels=3), LoraConfig(modules_to_save=["head"])
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.1.weight", "head.1.bias"} <= trainable


def test_bad_input():
    model = tiny()
    with pytest.raises(ConfigError, match=r"matches no module.*available: q, k, v, qkv, o, up, gate, down"):
        add_lora(model, LoraConfig(target_modules=["query_key"]))
    with pytest.raises(ConfigError, match="rank r must be an integer >= 1"):
        LoraConfig(r=0)
    with pytest.raises(ConfigError, match="ambiguous"):
        add_lora(model, LoraConfig(target_modules=["c_proj"]))
    with pytest.raises(ConfigError, match="overlap"):
        add_lora(model, LoraConfig(target_modules=["qkv", "q"]))
    assert not lora_layers(model)  # a refused call changes nothing
    add_lora(model, LoraConfig())
    with pytest.raises(ConfigError, match="already has LoRA"):
        add_lora(model, LoraConfig())


def test_merging_into_a_tied_weight_is_refused():
    model = add_lora(tiny("gpt-tiny"), LoraConfig(target_modules=["lm_head"]))
    with pytest.raises(ConfigError, match="tied to body.embed.tok.weight"):
        merge_lora(model)


def test_parse_cli_spec():
    cfg = LoraConfig.parse("r=8,alpha=16,targets=q,v,dropout=0.1")
    assert (cfg.r, cfg.lora_alpha, cfg.target_modules, cfg.lora_dropout) == (8, 16.0, ["q", "v"], 0.1)
    assert cfg.scaling == 2.0
    with pytest.raises(ConfigError, match="unknown LoRA option 'rank'"):
        LoraConfig.parse("rank=8")
    with pytest.raises(ConfigError, match="r must be an integer >= 1"):
        LoraConfig.parse("r=0")
