"""GPT2LMHeadModel <-> tformer DecoderLM. GPT-2's Conv1D stores weights as (in, out): transposed here."""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.interop.common import (
    TRANSPOSE,
    Converter,
    Tensors,
    activation_from_hf,
    activation_to_hf,
    add_prefix,
    drop_tied,
    export_names,
    rename,
    require,
    special_ids,
    strip_prefix,
    untie_stored_head,
)

MODEL_TYPE = "gpt2"


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The DecoderLM config of a GPT-2 config.json."""
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise ConfigError(f"GPT-2 option {flag}=true is not supported")
    d = require(hf, "n_embd")
    return ModelConfig(
        arch="decoder",
        vocab_size=require(hf, "vocab_size"),
        d_model=d,
        n_layers=require(hf, "n_layer"),
        n_heads=require(hf, "n_head"),
        d_ff=hf.get("n_inner") or 4 * d,
        max_seq_len=hf.get("n_positions", 1024),
        position="learned",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        norm_placement="pre",
        activation=activation_from_hf(hf.get("activation_function", "gelu_new")),
        attn_scale=None if hf.get("scale_attn_weights", True) else 1.0,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        dropout=hf.get("resid_pdrop", 0.1),
        attn_dropout=hf.get("attn_pdrop", 0.1),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        extra={"hf_architecture": architecture},
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Untie the LM head when the file stores one different from ``wte`` (as transformers 5 does)."""
    return untie_stored_head(config, tensors, "lm_head.weight", "transformer.wte.weight", "wte.weight")


RULES = [
    (r"wte\.weight", r"body.embed.tok.weight", None),
    (r"wpe\.weight", r"body.embed.positions.weight", None),
    (r"h\.(\d+)\.ln_1\.(weight|bias)", r"body.layers.\1.attn_norm.\2", None),
    (r"h\.(\d+)\.ln_2\.(weight|bias)", r"body.layers.\1.ffn_norm.\2", None),
    (r"h\.(\d+)\.attn\.c_attn\.weight", r"body.layers.\1.attn.qkv_proj.weight", TRANSPOSE),
    (r"h\.(\d+)\.attn\.c_attn\.bias", r"body.layers.\1.attn.qkv_proj.bias", None),
    (r"h\.(\d+)\.attn\.c_proj\.weight", r"body.layers.\1.attn.o_proj.weight", TRANSPOSE),
    (r"h\.(\d+)\.attn\.c_proj\.bias", r"body.layers.\1.attn.o_proj.bias", None),
    (r"h\.(\d+)\.mlp\.c_fc\.weight", r"body.layers.\1.ffn.up.weight", TRANSPOSE),
    (r"h\.(\d+)\.mlp\.c_fc\.bias", r"body.layers.\1.ffn.up.bias", None),
    (r"h\.(\d+)\.mlp\.c_proj\.weight", r"body.layers.\1.ffn.down.weight", TRANSPOSE),
    (r"h\.(\d+)\.mlp\.c_proj\.bias", r"body.layers.\1.ffn.down.bias", None),
    (r"ln_f\.(weight|bias)", r"body.norm.\1", None),
    (r"lm_head\.weight", r"lm_head.weight", None),
]
# causal-mask buffers that old GPT-2 files carry
IGNORE = [r"h\.\d+\.attn\.(bias|masked_bias)"]


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map GPT-2 tensor names onto DecoderLM, transposing the Conv1D weights."""
    tensors = strip_prefix(tensors, ["transformer."])
    tensors = drop_tied(tensors, "lm_head.weight", config.tie_word_embeddings)
    return rename(tensors, RULES, IGNORE, source="GPT-2 checkpoint")


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The GPT-2 config.json of a DecoderLM (what :func:`config_from_hf` reads back)."""
    return {
        "vocab_size": config.vocab_size,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff,
        "n_positions": config.max_seq_len,
        "layer_norm_epsilon": config.norm_eps,
        "activation_function": activation_to_hf(config.activation),
        "scale_attn_weights": config.attn_scale != 1.0,
        "tie_word_embeddings": config.tie_word_embeddings,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attn_dropout,
        **special_ids(config),
    }


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """DecoderLM tensors in GPT-2's names (``transformer.`` prefix, Conv1D weights transposed)."""
    return add_prefix(export_names(tensors, RULES, architecture), "transformer.", keep=["lm_head."])


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config, config_to_hf, state_dict_to_hf)
