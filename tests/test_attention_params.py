"""Attention kinds in the config: names, parameters and combinations are validated with one-line errors."""

import pytest
import torch

import tformer
from tformer.attention_params import ATTENTION_PARAMS, parse_attention_params
from tformer.config import ModelConfig
from tformer.errors import ConfigError


def test_defaults_are_completed_and_stored():
    cfg = ModelConfig(attention_kind="performer", attention_params={"nb_features": 64})
    assert cfg.attention_params == {"nb_features": 64, "redraw_interval": 0, "seed": 0, "chunk_size": 128}
    assert ModelConfig().attention_kind == "exact" and ModelConfig().attention_params == {}
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_changing_the_kind_starts_from_its_defaults():
    cfg = ModelConfig(attention_kind="local_global", attention_params={"window": 8})
    assert cfg.replace(attention_kind="performer").attention_params["nb_features"] == 256
    assert cfg.replace(n_layers=2).attention_params == {"window": 8, "global_projections": False}


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("flash", {}, "unknown attention_kind 'flash'; choose one of exact, local_global"),
        ("local_global", {"window": 0}, "attention_params.window must be an integer >= 1"),
        ("local_global", {"window": 2.5}, "attention_params.window must be an integer >= 1"),
        ("performer", {"nb_features": 0}, "attention_params.nb_features must be an integer >= 1"),
        ("linformer", {"k": 0}, "attention_params.k must be an integer >= 1"),
        ("block_sparse", {"block_size": 0}, "attention_params.block_size must be an integer >= 1"),
        ("block_sparse", {"random_blocks": -1}, "attention_params.random_blocks must be an integer >= 0"),
        (
            "performer",
            {"window": 4},
            r"attention_params \['window'\] do not apply to attention_kind='performer'",
        ),
        ("exact", {"window": 4}, "it takes none"),
        ("local_global", {"global_projections": 1}, "global_projections must be true or false"),
    ],
)
def test_bad_kinds_and_parameters(kind, params, message):
    with pytest.raises(ConfigError, match=message):
        parse_attention_params(kind, params)
    with pytest.raises(ConfigError, match=message):
        ModelConfig(arch="encoder", attention_kind=kind, attention_params=params)


def test_causal_linformer_is_refused():
    with pytest.raises(ConfigError, match="linformer' is bidirectional only"):
        tformer.build("gpt-tiny", attention_kind="linformer")
    with pytest.raises(ConfigError, match="linformer' is bidirectional only"):
        ModelConfig(arch="encoder_decoder", attention_kind="linformer")


@pytest.mark.parametrize("position", ["alibi", "t5_relative"])
def test_additive_relative_positions_need_exact_attention(position):
    with pytest.raises(ConfigError, match=f"position='{position}' adds a bias"):
        ModelConfig(position=position, attention_kind="local_global")


def test_mistral_window_points_to_local_global():
    with pytest.raises(ConfigError, match="use attention_kind='local_global'"):
        tformer.build("mistral-tiny", attention_kind="performer")


def test_rope_works_with_every_kind():
    """RoPE rotates q and k before any kind: a pattern covering every key gives the exact model's logits."""
    torch.manual_seed(0)
    ids = torch.randint(0, 512, (1, 9))
    exact = tformer.build("llama-tiny").eval()
    covering = {"local_global": {"window": 16}, "block_sparse": {"block_size": 4, "window_blocks": 2}}
    for kind in ATTENTION_PARAMS:
        arch = {"arch": "encoder"} if kind == "linformer" else {}
        model = tformer.build("llama-tiny", attention_kind=kind, attention_params=covering.get(kind), **arch)
        out = model.eval()(ids).last_hidden_state if arch else model.eval()(ids).logits
        assert torch.isfinite(out).all()
        if kind in covering:
            model.load_state_dict(exact.state_dict())
            with torch.no_grad():
                torch.testing.assert_close(model(ids).logits, exact(ids).logits, rtol=1e-5, atol=1e-5)


def test_longer_than_linformer_length_and_global_tokens_without_a_kind_that_has_them():
    model = tformer.build(
        "bert-tiny", attention_kind="linformer", attention_params={"k": 8, "max_seq_len": 16}
    )
    with pytest.raises(ValueError, match="17 tokens is longer than this Linformer's max_seq_len=16"):
        model(torch.randint(0, 512, (1, 17)))
    ids, glob = torch.randint(0, 512, (1, 8)), torch.zeros(1, 8, dtype=torch.long)
    glob[0, 0] = 1
    for kind in ("block_sparse", "performer", "linformer"):
        with pytest.raises(ValueError, match=f"attention_kind='{kind}' has no global tokens"):
            tformer.build("bert-tiny", attention_kind=kind)(ids, global_attention_mask=glob)
    with pytest.raises(ValueError, match="global_attention_mask needs attention_kind='local_global'"):
        tformer.build("bert-tiny")(ids, global_attention_mask=glob)


def test_efficient_kinds_have_no_attention_weights():
    model = tformer.build("bert-tiny", attention_kind="performer")
    with pytest.raises(ValueError, match="attention kind 'performer' has no attention weights"):
        model(torch.randint(0, 512, (1, 8)), output_attentions=True)
