"""Named model presets: the published shapes of well-known models, plus tiny ones for tests and demos."""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError

_GPT2 = dict(
    arch="decoder", vocab_size=50257, d_model=768, n_layers=12, n_heads=12, max_seq_len=1024,
    position="learned", norm="layernorm", norm_placement="pre", activation="gelu_tanh",
    dropout=0.1, attn_dropout=0.1, tie_word_embeddings=True, bos_token_id=50256, eos_token_id=50256,
)
_BERT = dict(
    arch="encoder", vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_seq_len=512,
    position="learned", norm="layernorm", norm_eps=1e-12, norm_placement="post", final_norm=False,
    activation="gelu", embedding_norm=True, type_vocab_size=2, dropout=0.1, attn_dropout=0.1,
    head="mlm", pad_token_id=0,
)
_T5 = dict(
    arch="encoder_decoder", vocab_size=32128, d_model=512, n_layers=6, n_heads=8, head_dim=64, d_ff=2048,
    max_seq_len=512, position="t5_relative", attn_bias=False, attn_out_bias=False, attn_scale=1.0,
    norm="rmsnorm", norm_eps=1e-6, norm_bias=False, norm_placement="pre", activation="relu", ffn_bias=False,
    tie_word_embeddings=True, scale_decoder_outputs=True, dropout=0.1, init="t5",
    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
_BART = dict(
    arch="encoder_decoder", vocab_size=50265, d_model=768, n_layers=6, n_heads=12, d_ff=3072,
    max_seq_len=1024, position="learned", position_offset=2, norm="layernorm", norm_placement="post",
    final_norm=False, activation="gelu", embedding_norm=True, tie_word_embeddings=True, lm_head_bias=True,
    dropout=0.1, attn_dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
)
_TRANSFORMER = dict(
    arch="encoder_decoder", vocab_size=37000, d_model=512, n_layers=6, n_heads=8, d_ff=2048,
    max_seq_len=1024, position="sinusoidal", norm="layernorm", norm_placement="post", final_norm=False,
    activation="relu", embed_scale=True, tie_word_embeddings=True, dropout=0.1, init="xavier",
    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
)
_LLAMA = dict(
    arch="decoder", position="rope", norm="rmsnorm", norm_bias=False, norm_placement="pre",
    activation="silu", gated_ffn=True, attn_bias=False, attn_out_bias=False, ffn_bias=False,
    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
)
_TINY = dict(d_model=64, n_heads=4, d_ff=256, max_seq_len=128, dropout=0.0, attn_dropout=0.0)

PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": _GPT2,
    "gpt2-medium": {**_GPT2, "d_model": 1024, "n_layers": 24, "n_heads": 16},
    "bert-base": _BERT,
    "t5-small": _T5,
    "bart-base": _BART,
    "transformer-base": _TRANSFORMER,
    "llama-2-7b": {**_LLAMA, "vocab_size": 32000, "d_model": 4096, "n_layers": 32, "n_heads": 32,
                   "d_ff": 11008, "max_seq_len": 4096, "norm_eps": 1e-5},
    "llama-3-8b": {**_LLAMA, "vocab_size": 128256, "d_model": 4096, "n_layers": 32, "n_heads": 32,
                   "n_kv_heads": 8, "d_ff": 14336, "max_seq_len": 8192, "norm_eps": 1e-5,
                   "rope_theta": 500000.0, "bos_token_id": 128000, "eos_token_id": 128001},
    "mistral-7b": {**_LLAMA, "vocab_size": 32000, "d_model": 4096, "n_layers": 32, "n_heads": 32,
                   "n_kv_heads": 8, "d_ff": 14336, "max_seq_len": 32768, "norm_eps": 1e-5,
                   "sliding_window": 4096},
    # tiny presets: well under 1M parameters, for tests and seconds-long demos
    "gpt-tiny": {**_GPT2, **_TINY, "vocab_size": 512, "n_layers": 2, "bos_token_id": None,
                 "eos_token_id": None},
    "bert-tiny": {**_BERT, **_TINY, "vocab_size": 512, "n_layers": 2},
    "t5-tiny": {**_T5, **_TINY, "vocab_size": 512, "n_layers": 2, "head_dim": None},
    "bart-tiny": {**_BART, **_TINY, "vocab_size": 512, "n_layers": 2},
    "transformer-tiny": {**_TRANSFORMER, **_TINY, "vocab_size": 512, "n_layers": 2},
    "llama-tiny": {**_LLAMA, **_TINY, "vocab_size": 512, "n_layers": 2, "n_kv_heads": 2, "d_ff": 172,
                   "norm_eps": 1e-6},
    "mistral-tiny": {**_LLAMA, **_TINY, "vocab_size": 512, "n_layers": 2, "n_kv_heads": 2, "d_ff": 172,
                     "norm_eps": 1e-6, "sliding_window": 16},
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The config of a named preset, with optional field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})
