"""LlamaForCausalLM / MistralForCausalLM <-> tformer DecoderLM (RoPE, RMSNorm, SwiGLU, GQA)."""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.interop.common import (
    Converter,
    Tensors,
    activation_from_hf,
    activation_to_hf,
    drop_tied,
    export_names,
    fuse_qkv,
    rename,
    require,
    special_ids,
    split_qkv,
    untie_stored_head,
)

MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) from transformers 5's ``rope_parameters`` or the older ``rope_theta``/``rope_scaling``."""
    params = hf.get("rope_parameters") or {}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = dict(params) if params else hf.get("rope_scaling")
    if scaling:
        scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
        scaling.setdefault("rope_type", scaling.pop("type", "default"))
        if scaling["rope_type"] == "default":
            scaling = None
    return float(theta), scaling


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The DecoderLM config of a Llama or Mistral config.json (Mistral adds its sliding window)."""
    theta, scaling = _rope(hf)
    heads = require(hf, "num_attention_heads")
    window = hf.get("sliding_window") if architecture == "MistralForCausalLM" else None
    return ModelConfig(
        arch="decoder",
        vocab_size=require(hf, "vocab_size"),
        d_model=require(hf, "hidden_size"),
        n_layers=require(hf, "num_hidden_layers"),
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim"),
        d_ff=require(hf, "intermediate_size"),
        max_seq_len=hf.get("max_position_embeddings", 2048),
        position="rope",
        rope_theta=theta,
        rope_scaling=scaling,
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        norm_bias=False,
        norm_placement="pre",
        activation=activation_from_hf(hf.get("hidden_act", "silu")),
        gated_ffn=True,
        attn_bias=hf.get("attention_bias", False),
        attn_out_bias=hf.get("attention_bias", False),
        ffn_bias=hf.get("mlp_bias", False),
        sliding_window=window,
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        dropout=0.0,
        attn_dropout=hf.get("attention_dropout", 0.0),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        extra={"hf_architecture": architecture},
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Untie the LM head when the file stores one different from the embedding (as transformers 5 does)."""
    return untie_stored_head(config, tensors, "lm_head.weight", "model.embed_tokens.weight")


RULES = [
    (r"model\.embed_tokens\.weight", r"body.embed.tok.weight", None),
    (r"model\.layers\.(\d+)\.qkv\.(weight|bias)", r"body.layers.\1.attn.qkv_proj.\2", None),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", r"body.layers.\1.attn.o_proj.\2", None),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)", r"body.layers.\1.ffn.gate.\2", None),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)", r"body.layers.\1.ffn.up.\2", None),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)", r"body.layers.\1.ffn.down.\2", None),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"body.layers.\1.attn_norm.weight", None),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"body.layers.\1.ffn_norm.weight", None),
    (r"model\.norm\.weight", r"body.norm.weight", None),
    (r"lm_head\.weight", r"lm_head.weight", None),
]
IGNORE = [r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq"]


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map Llama/Mistral tensor names onto DecoderLM, fusing q/k/v."""
    tensors = fuse_qkv(
        tensors, config.n_layers, "model.layers.{i}.self_attn.{p}_proj", "model.layers.{i}.qkv"
    )
    tensors = drop_tied(tensors, "lm_head.weight", config.tie_word_embeddings)
    return rename(tensors, RULES, IGNORE, source=f"{architecture} checkpoint")


def rope_parameters(config: ModelConfig) -> dict[str, Any]:
    """transformers 5's ``rope_parameters``: the type, theta and any scaling settings."""
    scaling = {k: v for k, v in (config.rope_scaling or {}).items() if k != "rope_type"}
    rope_type = (config.rope_scaling or {}).get("rope_type", "default")
    return {"rope_type": rope_type, "rope_theta": config.rope_theta, **scaling}


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The Llama or Mistral config.json of a DecoderLM (what :func:`config_from_hf` reads back).

    Mistral has no bias switches: a model with biases does not round-trip, and export refuses it.
    """
    out: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "hidden_act": activation_to_hf(config.activation),
        "rope_parameters": rope_parameters(config),
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_dropout": config.attn_dropout,
        **special_ids(config),
    }
    if architecture == "LlamaForCausalLM":
        out |= {"attention_bias": config.attn_bias, "mlp_bias": config.ffn_bias}
    else:
        out["sliding_window"] = config.sliding_window
    return out


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """DecoderLM tensors in Llama's names, q/k/v split."""
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    tensors = export_names(tensors, RULES, architecture)
    return split_qkv(
        tensors, config.n_layers, "model.layers.{i}.qkv", "model.layers.{i}.self_attn.{p}_proj", (q, kv, kv)
    )


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config, config_to_hf, state_dict_to_hf)
