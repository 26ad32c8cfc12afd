"""Adapter files: only adapter tensors are written, they reload exactly, and a wrong base model is named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import tformer
from tformer.errors import CheckpointError, ConfigError
from tformer.peft import LoraConfig, add_lora, load_adapter, lora_layers, merge_lora, save_adapter


def tiny(preset="llama-tiny", **overrides):
    torch.manual_seed(0)
    return tformer.build(preset, vocab_size=64, **overrides).eval()


@torch.no_grad()
def randomize(model, std=0.2):
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn_like(p) * std)


@torch.no_grad()
def logits(model, x):
    return model(x).logits


X = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))


def test_saved_adapter_holds_only_adapter_tensors_and_reloads_exactly(tmp_path):
    model = add_lora(tiny(), LoraConfig(r=4, lora_alpha=16, target_modules=["q", "v", "down"]))
    randomize(model)
    save_adapter(model, tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    n_layers = model.config.n_layers
    assert len(tensors) == n_layers * 3 * 2  # q, v, down: A and B each
    assert all(k.startswith("base_model.model.body.layers.") and ".lora_" in k for k in tensors)
    assert "base_model.model.body.layers.0.attn.qkv_proj.q.lora_A.weight" in tensors
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (meta["peft_type"], meta["r"], meta["lora_alpha"]) == ("LORA", 4, 16.0)

    fresh = load_adapter(tiny(), tmp_path)
    assert torch.equal(logits(fresh, X), logits(model, X))
    assert fresh.lora_config.target_modules == ["down", "q", "v"]
    trainable = [n for n, p in fresh.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_size_on_disk_is_the_adapter_only(tmp_path):
    model = add_lora(tiny(), LoraConfig(r=2, target_modules=["q", "v"]))
    save_adapter(model, tmp_path / "a")
    model_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert (tmp_path / "a" / "adapter_model.safetensors").stat().st_size < model_bytes / 10


def test_modules_to_save_and_biases_round_trip(tmp_path):
    model = tiny("bert-tiny", head="classification", num_labels=3)
    add_lora(model, LoraConfig(r=2, target_modules=["q", "v"], modules_to_save=["head"], bias="lora_only"))
    randomize(model)
    save_adapter(model, tmp_path)
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert {"base_model.model.head.1.weight", "base_model.model.head.1.bias"} <= keys
    assert "base_model.model.body.layers.0.attn.qkv_proj.bias" in keys
    fresh = load_adapter(tiny("bert-tiny", head="classification", num_labels=3), tmp_path)
    assert torch.equal(logits(fresh, X), logits(model, X))
    assert fresh.lora_config.modules_to_save == ["head.1"]


def test_merged_adapter_is_not_saved(tmp_path):
    model = merge_lora(add_lora(tiny(), LoraConfig()))
    with pytest.raises(ConfigError, match="unmerge_lora before save_adapter"):
        save_adapter(model, tmp_path)


def test_wrong_base_model_names_the_first_mismatching_tensor(tmp_path):
    save_adapter(add_lora(tiny(), LoraConfig(r=2, target_modules=["q"])), tmp_path)
    wider = tiny(d_model=96, n_heads=4, n_kv_heads=2)
    with pytest.raises(
        CheckpointError,
        match=r"adapter tensor 'base_model\.model\.body\.layers\.0\.attn\.qkv_proj\.q\.lora_A\.weight' has shape "
        r"\(2, 64\) but layer body\.layers\.0\.attn\.qkv_proj of this model needs \(2, 96\)",
    ):
        load_adapter(wider, tmp_path)
    assert not lora_layers(wider)  # refused before anything changed
    shallower = tiny(n_layers=1)
    with pytest.raises(CheckpointError, match=r"layers\.1\.attn\.qkv_proj\.q\.lora_A\.weight' targets layer"):
        load_adapter(shallower, tmp_path)


def test_hugging_face_names_on_a_native_model_are_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 2}))
    from safetensors.torch import save_file

    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    save_file(
        {key: torch.zeros(2, 64), key.replace("lora_A", "lora_B"): torch.zeros(64, 2)},
        tmp_path / "adapter_model.safetensors",
    )
    with pytest.raises(
        CheckpointError, match=r"targets layer 'model\.layers\.0\.self_attn\.q_proj', which this model lacks"
    ):
        load_adapter(tiny(), tmp_path)


def test_bad_directories(tmp_path):
    with pytest.raises(CheckpointError, match="is not an adapter directory"):
        load_adapter(tiny(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="IA3 adapter; tformer loads LoRA adapters only"):
        load_adapter(tiny(), tmp_path)
    model = add_lora(tiny(), LoraConfig())
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        load_adapter(model, tmp_path)
