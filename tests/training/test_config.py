from dataclasses import fields

import pytest

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.training.config import TrainConfig
from tformer.training.overrides import parse_value, split_overrides


def test_defaults_are_valid_and_round_trip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(lr=3e-4).lr == 3e-4


@pytest.mark.parametrize(
    "bad",
    [
        {"task": "lm"},
        {"batch_size": 0},
        {"lr": -1.0},
        {"min_lr": 1.0, "lr": 0.1},
        {"betas": (0.9, 1.5)},
        {"label_smoothing": 1.0},
        {"schedule": "noam", "warmup_steps": 0},
        {"precision": "fp16"},
        {"max_minutes": 0.0},
    ],
)
def test_invalid_values_raise_config_error(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*batch_size"):
        TrainConfig.from_dict({"batchsize": 3})


def test_no_field_name_is_shared_with_model_config():
    # --set finds the dataclass by the key alone
    assert not {f.name for f in fields(TrainConfig)} & {f.name for f in fields(ModelConfig)}


def test_set_overrides_are_typed_against_both_dataclasses():
    model, train = split_overrides(
        [
            "lr=3e-4",
            "betas=0.9,0.99",
            "clip_norm=none",
            "compile=yes",
            "d_model=48",
            "n_kv_heads=null",
            "precision=bf16",
            'rope_scaling={"factor": 2}',
        ]
    )
    assert train == {
        "lr": 3e-4,
        "betas": (0.9, 0.99),
        "clip_norm": None,
        "compile": True,
        "precision": "bf16",
    }
    assert model == {"d_model": 48, "n_kv_heads": None, "rope_scaling": {"factor": 2}}


@pytest.mark.parametrize(
    "pair, message",
    [
        ("foo=1", "unknown --set key 'foo'; valid keys: training: .*model: "),
        ("lr", "key=value"),
        ("batch_size=x", "integer"),
        ("precision=fp16", "choose one of"),
        ("compile=maybe", "true or false"),
    ],
)
def test_bad_overrides_are_one_line_errors(pair, message):
    with pytest.raises(ConfigError, match=message) as e:
        split_overrides([pair])
    assert "\n" not in str(e.value)


def test_parse_value_examples():
    assert parse_value(int | None, "none") is None
    assert parse_value(float | None, "2.5") == 2.5
    assert parse_value(tuple[float, float], "(0.8, 0.9)") == (0.8, 0.9)
