import pytest

from tformer.config import ModelConfig
from tformer.inspect import inspect_config, mean_causal_keys
from tformer.presets import get_preset


def test_gpt2_parameter_count_is_the_published_one():
    r = inspect_config(get_preset("gpt2"))
    assert r.total_params == 124_439_808
    assert r.params["embeddings"] == 50257 * 768 and r.params["positions"] == 1024 * 768
    assert r.params["attention"] == 12 * (768 * 3 * 768 + 3 * 768 + 768 * 768 + 768)
    assert r.params["head"] == 0  # tied


def test_small_config_by_hand():
    cfg = ModelConfig(
        vocab_size=10,
        d_model=8,
        n_layers=2,
        n_heads=2,
        n_kv_heads=1,
        d_ff=16,
        max_seq_len=4,
        position="rope",
        norm="rmsnorm",
        gated_ffn=True,
        activation="silu",
        attn_bias=False,
        attn_out_bias=False,
        ffn_bias=False,
        tie_word_embeddings=False,
    )
    r = inspect_config(cfg, seq_len=4, dtype="bfloat16", batch_size=3)
    attn = 8 * (8 + 4 + 4) + 8 * 8  # q (8), k and v (one 4-wide head each), out
    ffn = 3 * 8 * 16
    assert r.params == {
        "embeddings": 80,
        "positions": 0,
        "attention": 2 * attn,
        "ffn": 2 * ffn,
        "norms": 2 * 2 * 8 + 8,
        "head": 80,
    }
    assert r.flops_linear == 2 * (2 * (attn + ffn) + 80)
    # causal: on average (4 + 1) / 2 keys, 2 * 2 FLOPs per (query, key) per head dim
    assert r.flops_attention == int(2 * 4 * 2 * 4 * 2.5)
    assert r.kv_bytes_per_token == 2 * 2 * 1 * 4 * 2
    assert r.kv_bytes_full == r.kv_bytes_per_token * 4 * 3
    assert r.scores_bytes == 3 * 2 * 4 * 4 * 2


def test_mean_causal_keys():
    assert mean_causal_keys(4) == 2.5
    assert mean_causal_keys(4, 2) == pytest.approx(1.75)


def test_inspect_agrees_with_the_cache():
    import tformer

    cfg = get_preset("llama-tiny")
    model = tformer.build(cfg)
    model.setup_caches(2, 32)
    r = inspect_config(cfg, seq_len=32, batch_size=2)
    assert model.cache_nbytes() == r.kv_bytes_full


def test_large_presets_inspect_without_allocating():
    r = inspect_config(get_preset("llama-3-8b"))
    assert r.total_params == 8_030_261_248
