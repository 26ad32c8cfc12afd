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


# --- safetensors written and read tensor by tensor -----------------------------------------------------
def _mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "b.weight": torch.randn(5, 3, generator=g),
        "a.weight": torch.randn(4, generator=g),  # same dtype: ordered by name
        "emb": torch.randn(7, 2, generator=g).to(torch.bfloat16),
        "half": torch.randn(3, generator=g).half(),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "flags": torch.tensor([True, False, True]),
        "bytes": torch.arange(5, dtype=torch.uint8),
        "small": torch.arange(-3, 3, dtype=torch.int8),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
    }


def _header_and_data(path) -> tuple[list, bytes]:
    """A safetensors file's header entries in order, and its data bytes (the header's padding aside)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return list(json.loads(raw[8 : 8 + n]).items()), raw[8 + n :]


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_write_safetensors_writes_what_save_file_writes_with_aligned_data(tmp_path, metadata):
    from safetensors.torch import load_file, save_file

    from tformer.io import ALIGNMENT, write_safetensors

    tensors = _mixed_tensors()
    save_file(tensors, tmp_path / "ref.safetensors", metadata=metadata)
    # a transposed (non-contiguous) view is written as its contiguous copy; save_file refuses it
    ours = {**tensors, "b.weight": tensors["b.weight"].t().contiguous().t()}
    assert not ours["b.weight"].is_contiguous()
    write_safetensors(tmp_path / "ours.safetensors", ours, metadata=metadata)
    # the same header entries in the same order and the same data bytes; only the padding differs
    assert _header_and_data(tmp_path / "ours.safetensors") == _header_and_data(tmp_path / "ref.safetensors")
    n = int.from_bytes((tmp_path / "ours.safetensors").read_bytes()[:8], "little")
    assert (8 + n) % ALIGNMENT == 0
    back = load_file(tmp_path / "ours.safetensors")  # safetensors itself reads it
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_stored_tensors_read_what_load_file_reads(tmp_path):
    from safetensors.torch import load_file, save_file

    from tformer.io import read_safetensors_header

    tensors = _mixed_tensors()
    save_file(tensors, tmp_path / "t.safetensors")
    stored = read_safetensors_header(tmp_path / "t.safetensors")
    reference = load_file(tmp_path / "t.safetensors")
    assert stored.keys() == reference.keys()
    for name, ref in reference.items():
        s = stored[name]
        assert (s.dtype, s.shape, s.nbytes) == (ref.dtype, tuple(ref.shape), ref.numel() * ref.element_size())
        out = torch.empty_like(ref)
        s.read_into(out)
        for got in (s.map(), s.read(), out):
            assert got.dtype == ref.dtype and torch.equal(got, ref), name
    # a mapped tensor is copy-on-write: writing to it never reaches the file
    mapped = stored["b.weight"].map()
    mapped.add_(1.0)
    assert torch.equal(load_file(tmp_path / "t.safetensors")["b.weight"], reference["b.weight"])
    assert torch.equal(stored["b.weight"].map(), reference["b.weight"])


def test_corrupt_safetensors_files_are_named(tmp_path):
    from tformer.io import read_safetensors_header, write_safetensors

    good = tmp_path / "good.safetensors"
    write_safetensors(good, {"w": torch.ones(64, 64)})
    data = good.read_bytes()
    cases = {
        "truncated": (data[:-100], "tensor 'w' lies outside the file .*truncated"),
        "tiny": (data[:5], "shorter than its 8-byte header length"),
        "long_header": ((10**9).to_bytes(8, "little") + data[8:], "header length 1000000000 runs past"),
        "not_json": (data[:8] + b"x" + data[9:], "header is not valid JSON"),
        "dtype": (data.replace(b'"F32"', b'"F99"'), "tensor 'w' has dtype 'F99', which tformer cannot read"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{path.name}.*{message}|{message}.*{path.name}"):
            read_safetensors_header(path)


def _sharded_tformer_dir(tmp_path):
    """gpt-tiny saved, then split into two shards with an index (as a sharded checkpoint would be)."""
    from tformer.io import read_weights, write_safetensors

    torch.manual_seed(0)
    model = tformer.build("gpt-tiny").eval()
    model.save_pretrained(tmp_path)
    tensors = read_weights(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, part in shards.items():
        write_safetensors(tmp_path / shard, {n: tensors[n] for n in part})
    weight_map = {n: shard for shard, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return model, weight_map


def test_sharded_directory_loads_as_the_single_file(tmp_path):
    model, _ = _sharded_tformer_dir(tmp_path)
    loaded = tformer.from_pretrained(tmp_path)
    ids = torch.randint(0, 500, (1, 6))
    assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_bad_shards_are_named(tmp_path):
    from tformer.io import write_safetensors

    _, weight_map = _sharded_tformer_dir(tmp_path)
    index = tmp_path / "model.safetensors.index.json"

    def with_map(new_map):
        index.write_text(json.dumps({"weight_map": new_map}))

    first = next(iter(weight_map))
    with_map({**weight_map, "extra.weight": "model-00003-of-00003.safetensors"})
    with pytest.raises(
        CheckpointError, match="lists shard model-00003-of-00003.safetensors, which is missing"
    ):
        tformer.from_pretrained(tmp_path)
    with_map({**weight_map, first: "../elsewhere.safetensors"})
    with pytest.raises(CheckpointError, match="is not a file name"):
        tformer.from_pretrained(tmp_path)
    # the index places a tensor in the other shard than the one holding it
    other = next(s for s in set(weight_map.values()) if s != weight_map[first])
    with_map({**weight_map, first: other})
    with pytest.raises(CheckpointError, match=f"shard .*{weight_map[first]} holds tensor '{first}', which"):
        tformer.from_pretrained(tmp_path)
    with_map(weight_map)
    write_safetensors(tmp_path / other, {"unrelated": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=f"shard .*{other} lacks tensor"):
        tformer.from_pretrained(tmp_path)
    index.write_text("{}")
    with pytest.raises(CheckpointError, match="not a valid index"):
        tformer.from_pretrained(tmp_path)
