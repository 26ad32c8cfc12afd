import json

import pytest

import tformer
from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.presets import PRESETS, get_preset


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(d_model=100, n_heads=3), "d_model=100 is not divisible by n_heads=3"),
        (dict(n_heads=8, n_kv_heads=3), "n_heads=8 is not divisible by n_kv_heads=3"),
        (dict(position="absolute"), "position='absolute' is not valid"),
        (dict(norm="batchnorm"), "norm='batchnorm' is not valid"),
        (dict(activation="tanh"), "activation='tanh' is not valid"),
        (dict(dropout=1.5), "dropout must be in"),
        (dict(vocab_size=0), "vocab_size must be a positive integer"),
        (dict(sliding_window=0), "sliding_window must be"),
        (dict(head="mlm"), "head='mlm' applies only to arch='encoder'"),
        (dict(position="rope", d_model=24, n_heads=8), "rope needs an even head_dim"),
    ],
)
def test_invalid_values_raise_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        ModelConfig(**kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_derived_fields():
    cfg = ModelConfig(d_model=64, n_heads=4)
    assert (cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.n_decoder_layers) == (4, 16, 256, cfg.n_layers)
    assert ModelConfig(d_model=64, n_heads=4, n_kv_heads=1).n_kv_heads == 1


def test_json_round_trip(tmp_path):
    cfg = get_preset("llama-tiny")
    cfg.to_json(tmp_path / "c.json")
    assert ModelConfig.from_json(tmp_path / "c.json") == cfg
    json.dumps(cfg.to_dict())  # serialisable


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown config keys \\['n_embd'\\]; valid keys: .*d_model"):
        ModelConfig.from_dict({"n_embd": 64})


def test_every_preset_is_valid_and_tiny_presets_are_tiny():
    for name in PRESETS:
        get_preset(name)
    for name in ("gpt-tiny", "bert-tiny", "t5-tiny"):
        assert tformer.build(name).num_parameters() < 1_000_000


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'gpt5'; available presets: .*gpt2"):
        get_preset("gpt5")


def test_transformer_base_is_the_2017_base_model():
    cfg = get_preset("transformer-base")
    assert (cfg.n_layers, cfg.n_decoder_layers, cfg.d_model, cfg.d_ff, cfg.n_heads) == (6, 6, 512, 2048, 8)
    assert (cfg.position, cfg.norm_placement, cfg.activation, cfg.dropout) == (
        "sinusoidal",
        "post",
        "relu",
        0.1,
    )
    assert cfg.tie_word_embeddings and cfg.embed_scale
