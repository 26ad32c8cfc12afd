"""tformer.loading: which format a model directory holds, and the public save/load names."""

from __future__ import annotations

import json

import pytest
import torch

import tformer
from tformer.errors import CheckpointError, ConfigError
from tformer.loading import read_model_config


def test_public_save_pretrained_writes_what_the_method_writes(tmp_path):
    torch.manual_seed(0)
    model = tformer.build("bert-tiny")
    tformer.save_pretrained(model, tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_model_config(tmp_path / "a") == model.config == tformer.from_pretrained(tmp_path / "a").config


def test_read_model_config_of_a_hugging_face_directory(tmp_path):
    """An HF config.json maps through the converter registry, without reading (or needing) weights."""
    hf = {"architectures": ["GPT2LMHeadModel"], "vocab_size": 80, "n_embd": 32, "n_layer": 3, "n_head": 4}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    cfg = read_model_config(tmp_path)
    assert (cfg.arch, cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads) == ("decoder", 80, 32, 3, 4)
    assert cfg.extra["hf_architecture"] == "GPT2LMHeadModel"
    with pytest.raises(CheckpointError, match="no weights in"):
        tformer.from_pretrained(tmp_path)


def test_read_model_config_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_model_config(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="neither a tformer nor a Hugging Face config"):
        read_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchModel"]}))
    with pytest.raises(
        ConfigError, match="unsupported architecture 'NoSuchModel'; supported: GPT2LMHeadModel"
    ):
        read_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "tformer", "format_version": 2, "model": {}}))
    with pytest.raises(CheckpointError, match="newer tformer"):
        read_model_config(tmp_path)
