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


def _encoder(kind: str, params: dict, arch: str = "encoder") -> ModelConfig:
    """2 layers, 2 heads of width 8."""
    return ModelConfig(
        arch=arch,
        vocab_size=10,
        d_model=16,
        n_layers=2,
        n_heads=2,
        max_seq_len=32,
        attention_kind=kind,
        attention_params=params,
    )


@pytest.mark.parametrize(
    "kind, params, arch, flops_per_head, elements_per_head",
    [
        # blocks of c = 3 queries over 3c = 9 keys, T padded to 12: 4 D FLOPs per score
        ("local_global", {"window": 3}, "encoder", 4 * 8 * 12 * 9, 12 * 9),
        # causal: 2c = 6 keys per query
        ("local_global", {"window": 3}, "decoder", 4 * 8 * 12 * 6, 12 * 6),
        # 5 blocks of 2; block 0 global: 2 rows x 10 keys; rows 1-4 gather K = 4 blocks (3 window + global)
        (
            "block_sparse",
            {"block_size": 2, "random_blocks": 0},
            "encoder",
            4 * 8 * (2 * 10 + 4 * 2 * 4 * 2),
            84,
        ),
        # features 2 x 2TmD, phi(K)^T V and phi(Q)(.) 2 x 2TmD, denominator 2Tm: T=10, m=4, D=8
        (
            "performer",
            {"nb_features": 4, "chunk_size": 4},
            "encoder",
            8 * 10 * 4 * 8 + 2 * 10 * 4,
            2 * 10 * 4,
        ),
        # causal: chunks of 4, 4, 2 queries add 2 n^2 (m + D); a 4 x 4 chunk held
        ("performer", {"nb_features": 4, "chunk_size": 4}, "decoder", 2640 + 2 * (16 + 16 + 4) * 12, 80 + 16),
        # E K, F V, scores and their use: 8 T k D
        ("linformer", {"k": 5}, "encoder", 8 * 10 * 5 * 8, 10 * 5),
    ],
)
def test_attention_kinds_by_hand(kind, params, arch, flops_per_head, elements_per_head):
    r = inspect_config(_encoder(kind, params, arch), seq_len=10, batch_size=3)
    assert r.flops_attention == int(2 * 2 * flops_per_head / 10)  # layers x heads, per token
    assert r.scores_bytes == 3 * 2 * elements_per_head * 4  # batch x heads x elements x fp32


def test_exact_kind_is_unchanged_and_efficient_kinds_cost_less_at_length():
    assert inspect_config(_encoder("exact", {}), seq_len=10).flops_attention == 2 * 4 * 2 * 8 * 10
    params = {"exact": {}, "local_global": {}, "linformer": {"max_seq_len": 4096}}
    long = {kind: inspect_config(_encoder(kind, p), seq_len=4096) for kind, p in params.items()}
    assert long["local_global"].scores_bytes * 10 < long["exact"].scores_bytes
    assert long["linformer"].flops_attention * 5 < long["exact"].flops_attention


def test_performer_decoder_reports_its_state_not_a_kv_cache():
    import tformer

    cfg = get_preset("gpt-tiny", attention_kind="performer", attention_params={"nb_features": 16})
    model = tformer.build(cfg)
    model.setup_caches(2, 32)
    r = inspect_config(cfg, seq_len=32, batch_size=2)
    assert r.kv_bytes_per_token == 0 and r.kv_bytes_full == model.cache_nbytes()
