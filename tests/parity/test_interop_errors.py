"""Bad Hugging Face directories: each fails with a CheckpointError/ConfigError naming the problem, and a
pickle is never executed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import tformer
from tformer.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")

VOCAB = 64


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A tiny BertModel saved by transformers (bare keys, no ``bert.`` prefix)."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
    )
    d = tmp_path_factory.mktemp("bert")
    transformers.BertModel(cfg).eval().save_pretrained(d)
    return d


@pytest.fixture
def model_dir(hf_dir, tmp_path) -> Path:
    """A private copy of the saved model to tamper with."""
    return Path(shutil.copytree(hf_dir, tmp_path / "model"))


def edit_weights(directory: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    """Rewrite the directory's model.safetensors after ``edit`` changes its tensors in place."""
    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors")


def test_unmodified_directory_loads(model_dir):
    assert tformer.from_pretrained(model_dir).config.head == "none"


def test_extra_unknown_tensor_is_named(model_dir):
    edit_weights(model_dir, lambda t: t.update({"encoder.layer.0.mystery.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.mystery\.weight"):
        tformer.from_pretrained(model_dir)


def test_missing_tensor_is_named(model_dir):
    edit_weights(model_dir, lambda t: t.pop("encoder.layer.1.output.dense.bias"))
    # reported under tformer's name for it: the second layer's feed-forward down-projection bias
    with pytest.raises(CheckpointError, match=r"missing weight 'body\.layers\.1\.ffn\.down\.bias'"):
        tformer.from_pretrained(model_dir)


def test_missing_part_of_a_fused_projection_is_named(model_dir):
    edit_weights(model_dir, lambda t: t.pop("encoder.layer.0.attention.self.key.weight"))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.attention\.self\.key\.weight"):
        tformer.from_pretrained(model_dir)


def test_shape_mismatch_is_named(model_dir):
    edit_weights(
        model_dir, lambda t: t.update({"encoder.layer.0.intermediate.dense.weight": torch.zeros(50, 32)})
    )
    with pytest.raises(
        CheckpointError, match=r"shape mismatch for 'body\.layers\.0\.ffn\.up\.weight'.*\(50, 32\)"
    ):
        tformer.from_pretrained(model_dir)


def test_shape_mismatch_inside_a_fused_projection_is_named(model_dir):
    edit_weights(
        model_dir, lambda t: t.update({"encoder.layer.1.attention.self.value.weight": torch.zeros(32, 31)})
    )
    with pytest.raises(
        CheckpointError, match=r"shape mismatch.*encoder\.layer\.1\.attention\.self\.value\.weight"
    ):
        tformer.from_pretrained(model_dir)


def test_unsupported_architecture_lists_supported_ones(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text()) | {"architectures": ["FooForBar"]}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"FooForBar.*BertModel.*T5ForConditionalGeneration"):
        tformer.from_pretrained(model_dir)


def test_config_without_weights(model_dir):
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        tformer.from_pretrained(model_dir)


class WritesMarker:
    """Unpickling this calls open(path, "w"): code execution a safe loader must refuse."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return open, (self.path, "w")


@pytest.mark.parametrize("payload", ["object", "function"])
def test_pickle_with_code_is_refused_and_not_run(model_dir, tmp_path, payload):
    marker = tmp_path / "pwned"
    tensors = load_file(model_dir / "model.safetensors")
    tensors["evil"] = WritesMarker(marker) if payload == "object" else os.system  # a reference, never called
    (model_dir / "model.safetensors").unlink()
    torch.save(tensors, model_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refusing to load"):
        tformer.from_pretrained(model_dir)
    assert not marker.exists()
    if payload == "object":  # the payload is live: an unsafe load would have run it
        torch.load(model_dir / "pytorch_model.bin", weights_only=False)
        assert marker.exists()


def test_plain_pytorch_model_bin_loads_and_matches(model_dir, hf_dir):
    tensors = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(tensors, model_dir / "pytorch_model.bin")
    from_bin, from_safetensors = tformer.from_pretrained(model_dir), tformer.from_pretrained(hf_dir)
    ids = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(from_bin(ids).last_hidden_state, from_safetensors(ids).last_hidden_state)
    for name, t in from_safetensors.state_dict().items():
        assert torch.equal(from_bin.state_dict()[name], t), name
