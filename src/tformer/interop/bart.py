"""BartForConditionalGeneration <-> tformer EncoderDecoderLM.

BART is post-LN with a LayerNorm on the embeddings, learned positions whose table starts at index 2, an
optional sqrt(d_model) embedding scale, and an LM head tied to the shared embedding plus a fixed
``final_logits_bias``.
"""

from __future__ import annotations

from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.interop.common import (
    Converter,
    Rule,
    Tensors,
    Transform,
    activation_from_hf,
    activation_to_hf,
    add_prefix,
    drop_tied,
    export_names,
    fuse_encoder_decoder_attention,
    merge_alias,
    rename,
    require,
    split_encoder_decoder_attention,
    strip_prefix,
    untie_stored_head,
)

MODEL_TYPE = "bart"

# fairseq/mBART switches that plain BART leaves off; tformer's BART layout has no place for them
_UNSUPPORTED_TRUE = ("add_final_layer_norm", "normalize_before", "add_bias_logits")


def _check_supported(hf: dict[str, Any]) -> None:
    """Refuse BART variants whose layout tformer's EncoderDecoderLM cannot express."""
    for flag in _UNSUPPORTED_TRUE:
        if hf.get(flag):
            raise ConfigError(f"BART option {flag}=true (an mBART/fairseq variant) is not supported")
    if hf.get("normalize_embedding", True) is False:
        raise ConfigError("BART option normalize_embedding=false is not supported")
    # one ModelConfig width/head count serves both stacks
    for enc, dec in (
        ("encoder_ffn_dim", "decoder_ffn_dim"),
        ("encoder_attention_heads", "decoder_attention_heads"),
    ):
        if enc in hf and dec in hf and hf[enc] != hf[dec]:
            raise ConfigError(f"BART with {enc}={hf[enc]} != {dec}={hf[dec]} is not supported")


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The EncoderDecoderLM config of a BART config.json."""
    _check_supported(hf)
    return ModelConfig(
        arch="encoder_decoder",
        vocab_size=require(hf, "vocab_size"),
        d_model=require(hf, "d_model"),
        n_layers=require(hf, "encoder_layers"),
        n_decoder_layers=require(hf, "decoder_layers"),
        n_heads=require(hf, "encoder_attention_heads"),
        d_ff=require(hf, "encoder_ffn_dim"),
        max_seq_len=hf.get("max_position_embeddings", 1024),
        position="learned",
        position_offset=2,
        # BART's LayerNorms use PyTorch's default eps
        norm="layernorm",
        norm_eps=1e-5,
        norm_placement="post",
        final_norm=False,
        activation=activation_from_hf(hf.get("activation_function", "gelu")),
        embed_scale=bool(hf.get("scale_embedding", False)),
        embedding_norm=True,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        lm_head_bias=True,
        dropout=hf.get("dropout", 0.1),
        attn_dropout=hf.get("attention_dropout", 0.0),
        pad_token_id=hf.get("pad_token_id", 1),
        bos_token_id=hf.get("bos_token_id", 0),
        eos_token_id=hf.get("eos_token_id", 2),
        decoder_start_token_id=hf.get("decoder_start_token_id", 2),
        extra={"hf_architecture": architecture},
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Untie the LM head when the file stores one different from the shared embedding (as transformers 5 does)."""
    return untie_stored_head(config, tensors, "lm_head.weight", "model.shared.weight")


_S = r"(encoder|decoder)\.layers\.(\d+)\."
_X = r"decoder\.layers\.(\d+)\."
RULES: list[Rule] = [
    (r"shared\.weight", "shared.weight", None),
    (r"(encoder|decoder)\.embed_positions\.weight", r"\1.embed.positions.weight", None),
    (r"(encoder|decoder)\.layernorm_embedding\.(weight|bias)", r"\1.embed.norm.\2", None),
    (_S + r"self_attn\.qkv\.(weight|bias)", r"\1.layers.\2.attn.qkv_proj.\3", None),
    (_S + r"self_attn\.out_proj\.(weight|bias)", r"\1.layers.\2.attn.o_proj.\3", None),
    (_S + r"self_attn_layer_norm\.(weight|bias)", r"\1.layers.\2.attn_norm.\3", None),
    (_X + r"encoder_attn\.q_proj\.(weight|bias)", r"decoder.layers.\1.cross_attn.q_proj.\2", None),
    (_X + r"encoder_attn\.kv\.(weight|bias)", r"decoder.layers.\1.cross_attn.kv_proj.\2", None),
    (_X + r"encoder_attn\.out_proj\.(weight|bias)", r"decoder.layers.\1.cross_attn.o_proj.\2", None),
    (_X + r"encoder_attn_layer_norm\.(weight|bias)", r"decoder.layers.\1.cross_attn_norm.\2", None),
    (_S + r"fc1\.(weight|bias)", r"\1.layers.\2.ffn.up.\3", None),
    (_S + r"fc2\.(weight|bias)", r"\1.layers.\2.ffn.down.\3", None),
    (_S + r"final_layer_norm\.(weight|bias)", r"\1.layers.\2.ffn_norm.\3", None),
    (r"lm_head\.weight", "lm_head.weight", None),
    # a (1, V) buffer in the file, tformer's (V,) LM-head bias
    (r"final_logits_bias", "lm_head.bias", Transform(lambda t: t.reshape(-1), lambda t: t.reshape(1, -1))),
]
# where q/k/v live in BART's files, and where fuse_encoder_decoder_attention puts them fused
_ATTENTION = dict(
    self_attn="{stack}.layers.{i}.self_attn.{p}_proj",
    self_fused="{stack}.layers.{i}.self_attn.qkv",
    cross_attn="decoder.layers.{i}.encoder_attn.{p}_proj",
    cross_fused="decoder.layers.{i}.encoder_attn.kv",
)
# fairseq version markers that old files carry (transformers ignores them too)
IGNORE = [r"(encoder|decoder)\.version"]


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map BART tensor names onto EncoderDecoderLM, fusing self-attention q/k/v and cross-attention k/v."""
    tensors = strip_prefix(tensors, ["model."])
    for stack in ("encoder", "decoder"):
        tensors = merge_alias(tensors, f"{stack}.embed_tokens.weight", "shared.weight")
    tensors = drop_tied(tensors, "lm_head.weight", config.tie_word_embeddings)
    if "final_logits_bias" not in tensors:
        # transformers treats a missing final_logits_bias as zeros (it is never trained)
        tensors["final_logits_bias"] = torch.zeros(1, config.vocab_size)
    tensors = fuse_encoder_decoder_attention(tensors, config, **_ATTENTION)
    return rename(tensors, RULES, IGNORE, source=f"{architecture} checkpoint")


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The BART config.json of an EncoderDecoderLM (what :func:`config_from_hf` reads back).

    ``forced_eos_token_id`` is written as null: BartConfig would otherwise default it to 2; generation
    settings go to generation_config.json.
    """
    return {
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "encoder_layers": config.n_layers,
        "decoder_layers": config.n_decoder_layers,
        "encoder_attention_heads": config.n_heads,
        "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff,
        "decoder_ffn_dim": config.d_ff,
        "max_position_embeddings": config.max_seq_len,
        "activation_function": activation_to_hf(config.activation),
        "scale_embedding": config.embed_scale,
        "tie_word_embeddings": config.tie_word_embeddings,
        "dropout": config.dropout,
        "attention_dropout": config.attn_dropout,
        "activation_dropout": 0.0,
        "is_encoder_decoder": True,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "forced_eos_token_id": None,
    }


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """EncoderDecoderLM tensors in BART's names: attention split, ``model.`` before all but the head."""
    tensors = split_encoder_decoder_attention(
        export_names(tensors, RULES, architecture), config, **_ATTENTION
    )
    return add_prefix(tensors, "model.", keep=["lm_head.", "final_logits_bias"])


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config, config_to_hf, state_dict_to_hf)
