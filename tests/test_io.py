import json
import pickle

import pytest
import torch

import tformer
from tformer.errors import CheckpointError, ConfigError
from tformer.io import atomic_write


@pytest.mark.parametrize("preset", ["gpt-tiny", "bert-tiny", "t5-tiny", "bart-tiny", "llama-tiny"])
def test_save_then_load_is_exact(tmp_path, preset):
    torch.manual_seed(0)
    model = tformer.build(preset).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = tformer.from_pretrained(tmp_path)
    assert not loaded.training
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    ids = torch.randint(0, 500, (1, 6))
    kw = {"decoder_input_ids": ids} if model.config.arch == "encoder_decoder" else {}
    assert torch.equal(model(ids, **kw).logits, loaded(ids, **kw).logits)  # every preset here has an LM head
    # tying survives the round trip
    if preset == "gpt-tiny":
        assert loaded.lm_head.weight is loaded.body.embed.tok.weight


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        tformer.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="has no config.json"):
        tformer.from_pretrained(tmp_path)
    tformer.build("gpt-tiny").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights in"):
        tformer.from_pretrained(tmp_path)


def test_mismatched_weights_name_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    tformer.build("gpt-tiny").save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    bad = dict(tensors)
    bad["body.norm.weight"] = torch.ones(3)
    save_file(bad, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatch for 'body.norm.weight'.*\\(3,\\).*\\(64,\\)"):
        tformer.from_pretrained(tmp_path)
    bad = {k: v for k, v in tensors.items() if k != "body.layers.1.ffn.up.bias"}
    save_file(bad, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing weight 'body.layers.1.ffn.up.bias'"):
        tformer.from_pretrained(tmp_path)
    save_file({**tensors, "extra.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected weight 'extra.weight'"):
        tformer.from_pretrained(tmp_path)


def test_unknown_config_format(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="neither a tformer nor a Hugging Face config"):
        tformer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        tformer.from_pretrained(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (open, ("/tmp/tformer_pwned_marker", "w"))


def test_pickle_with_code_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"architectures": ["GPT2LMHeadModel"], "vocab_size": 8, "n_embd": 8, "n_layer": 1, "n_head": 2}
        )
    )
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": _Exploit()}, f)
    import os

    if os.path.exists("/tmp/tformer_pwned_marker"):
        os.unlink("/tmp/tformer_pwned_marker")
    with pytest.raises(CheckpointError, match="refusing to load .*pytorch_model.bin"):
        tformer.from_pretrained(tmp_path)
    assert not os.path.exists("/tmp/tformer_pwned_marker")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_write_model_dir_needs_only_config_and_tensors(tmp_path):
    """A tformer directory is written from a config and a state dict, and read back the same, with no model."""
    from tformer.io import (
        is_tformer_config,
        read_config,
        read_weights,
        tformer_config,
        unique_state_dict,
        write_model_dir,
    )

    torch.manual_seed(0)
    model = tformer.build("gpt-tiny")
    tensors = unique_state_dict(model)
    assert "lm_head.weight" not in tensors  # tied to the embedding: stored once
    write_model_dir(tmp_path / "a", model.config, tensors)
    raw = read_config(tmp_path / "a")
    assert is_tformer_config(raw) and raw["tformer_version"] == tformer.__version__
    assert tformer_config(raw, tmp_path / "a") == model.config
    back = read_weights(tmp_path / "a")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    # the method writes exactly this
    model.save_pretrained(tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="exists and is not a directory"):
        write_model_dir(tmp_path / "file", model.config, tensors)


def test_a_newer_format_is_refused(tmp_path):
    tformer.build("gpt-tiny").save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="newer tformer \\(format 99\\); upgrade"):
        tformer.from_pretrained(tmp_path)
