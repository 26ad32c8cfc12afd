"""tformer.loading: which format a model directory holds, and the public save/load names."""

from __future__ import annotations

import json
from pathlib import Path

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


# --- dtype ---------------------------------------------------------------------------------------------
def _saved(tmp_path, preset="gpt-tiny", dtype=torch.float32, **overrides):
    torch.manual_seed(0)
    model = tformer.build(preset, **overrides).to(dtype).eval()
    model.save_pretrained(tmp_path)
    return model


def test_auto_dtype_keeps_the_checkpoints_and_a_named_dtype_casts(tmp_path):
    model = _saved(tmp_path, dtype=torch.bfloat16)
    auto = tformer.from_pretrained(tmp_path)
    assert {p.dtype for p in auto.parameters()} == {torch.bfloat16}
    for dtype in ("float32", torch.float32, "fp16", torch.float16):
        loaded = tformer.from_pretrained(tmp_path, dtype=dtype)
        want = {"fp16": torch.float16, "float32": torch.float32}.get(dtype, dtype)
        for (name, p), ref in zip(loaded.named_parameters(), model.parameters()):
            assert p.dtype == want and torch.equal(p, ref.to(want)), name
    ids = torch.randint(0, 500, (1, 6))
    assert torch.equal(auto(ids).logits, model(ids).logits)


def test_auto_dtype_follows_a_hugging_face_config(tmp_path):
    from tests.checkpoints import llama_config, llama_tensors, write_hf_dir

    config = llama_config(dtype="bfloat16")
    tensors = llama_tensors(config, torch.float32)
    write_hf_dir(tmp_path / "a", config, tensors)
    assert {p.dtype for p in tformer.from_pretrained(tmp_path / "a").parameters()} == {torch.bfloat16}
    del config["dtype"]  # no dtype in config.json: the tensors' own
    write_hf_dir(tmp_path / "b", config, tensors)
    assert {p.dtype for p in tformer.from_pretrained(tmp_path / "b").parameters()} == {torch.float32}


def test_a_dtype_weights_cannot_be_cast_to_is_refused(tmp_path):
    _saved(tmp_path)
    with pytest.raises(ValueError, match=f"cannot load {tmp_path} as torch.int8: .*floating"):
        tformer.from_pretrained(tmp_path, dtype=torch.int8)
    with pytest.raises(ValueError, match="unknown dtype 'int4'; choose auto, float32"):
        tformer.from_pretrained(tmp_path, dtype="int4")


# --- construction on the meta device -------------------------------------------------------------------
@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("gpt-tiny", {}),
        ("gpt-tiny", {"position": "alibi"}),
        ("llama-tiny", {"rope_scaling": None}),
        ("transformer-tiny", {}),  # sinusoidal positions
        ("t5-tiny", {}),
        ("bart-tiny", {}),
        ("bert-tiny", {}),
        ("mixtral-tiny", {}),
        *[("bert-tiny", {"attention_kind": k}) for k in ("local_global", "block_sparse", "linformer")],
        ("gpt-tiny", {"attention_kind": "performer"}),  # its random features: a persistent buffer
        ("vit-tiny", {}),
    ],
)
def test_loading_rebuilds_buffers_and_ties_of_a_freshly_built_model(tmp_path, preset, overrides):
    """No tensor is left on the meta device, derived buffers equal the constructor's, tied weights stay one
    object (T5/BART's shared embedding, GPT-2's head)."""
    model = _saved(tmp_path, preset, **overrides)
    loaded = tformer.from_pretrained(tmp_path)
    if model.config.arch == "vit":
        c = model.config
        inputs, kw = torch.randn(1, c.num_channels, c.image_size, c.image_size), {}
    else:
        inputs = torch.randint(0, 500, (1, 8))
        kw = {"decoder_input_ids": inputs} if model.config.arch == "encoder_decoder" else {}
    assert torch.equal(loaded(inputs, **kw).logits, model(inputs, **kw).logits)
    built, got = dict(model.named_buffers()), dict(loaded.named_buffers())
    assert built.keys() == got.keys()
    assert all(torch.equal(built[n], got[n]) and built[n].dtype == got[n].dtype for n in built)

    def tie_groups(m):
        groups: dict[int, list[str]] = {}
        for name, p in m.named_parameters(remove_duplicate=False):
            groups.setdefault(id(p), []).append(name)
        return sorted(groups.values())

    assert tie_groups(loaded) == tie_groups(model)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])


def _mapped(path) -> int:
    """How many memory maps of ``path`` this process holds."""
    with open("/proc/self/maps") as f:
        return sum(str(path) in line for line in f)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_stored_tensors_stay_memory_mapped_copy_on_write(tmp_path):
    import gc

    model = _saved(tmp_path)
    weights = tmp_path / "model.safetensors"
    before = weights.read_bytes()
    loaded = tformer.from_pretrained(tmp_path)
    assert _mapped(weights) == len(dict(loaded.named_parameters()))  # one map per stored tensor
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)  # copy-on-write: the file never changes
    assert weights.read_bytes() == before
    del loaded, p
    gc.collect()
    assert _mapped(weights) == 0  # released with the tensors
    copied = tformer.from_pretrained(tmp_path, mmap=False)
    assert _mapped(weights) == 0
    assert all(torch.equal(a, b) for a, b in zip(copied.parameters(), model.parameters()))


def test_not_enough_memory_is_announced_before_reading(tmp_path, monkeypatch):
    _saved(tmp_path)
    monkeypatch.setattr(tformer.io, "available_memory", lambda: 1000)
    with pytest.raises(
        CheckpointError, match=f"loading {tmp_path} as torch.float32 needs .* GiB .*only 0.00 GiB"
    ):
        tformer.from_pretrained(tmp_path, mmap=False)
    with pytest.raises(CheckpointError, match="needs"):
        tformer.from_pretrained(tmp_path, dtype="bfloat16")  # a cast allocates
    tformer.from_pretrained(tmp_path)  # kept memory-mapped: nothing to allocate


# --- the per-module hook (where quantise-on-load plugs in) ---------------------------------------------
class Doubled(torch.nn.Module):
    """A replacement computing twice the linear it wraps (stands in for a quantised linear)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.inner(x)


def test_module_hook_sees_each_module_complete_in_model_order_and_can_replace_it(tmp_path):
    from tests.checkpoints import llama_config, llama_tensors, write_hf_dir

    config = llama_config()
    write_hf_dir(tmp_path, config, llama_tensors(config))  # Hugging Face names: q/k/v fused while loading
    reference = tformer.from_pretrained(tmp_path)
    seen = []

    def hook(name, module):
        own = list(module.parameters(recurse=False))
        assert own and not any(w.is_meta for w in own)  # complete when the hook runs
        seen.append(name)
        return Doubled(module) if name == "body.layers.1.ffn.down" else None

    loaded = tformer.from_pretrained(tmp_path, module_hook=hook)
    owners = [n for n, m in reference.named_modules() if list(m.parameters(recurse=False))]
    assert seen == owners  # every module owning weights, once, in model order
    assert isinstance(loaded.body.layers[1].ffn.down, Doubled)
    ids = torch.randint(0, 96, (1, 5))
    assert not torch.allclose(loaded(ids).logits, reference(ids).logits)


def test_weights_are_materialised_one_module_at_a_time(tmp_path):
    """When the hook sees a module, every module after it is still on the meta device (unallocated)."""
    from tformer.io import read_weights
    from tformer.loading import load_plan
    from tformer.models import build_empty

    model = _saved(tmp_path, "llama-tiny")
    empty = build_empty(model.config)
    order = [n for n, m in empty.named_modules() if list(m.parameters(recurse=False))]
    checked = []

    def hook(name, module):
        later = order[order.index(name) + 1 :]
        assert all(p.is_meta for n in later for p in empty.get_submodule(n).parameters(recurse=False))
        checked.append(name)

    load_plan(empty, read_weights(tmp_path), dtype=torch.float32, module_hook=hook)
    assert checked == order
    ids = torch.randint(0, 500, (1, 6))
    assert torch.equal(empty.eval()(ids).logits, model(ids).logits)
