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
    drop_tied,
    fuse_encoder_decoder_attention,
    merge_alias,
    rename,
    require,
    strip_prefix,
    untie_stored_head,
)

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
    tensors = fuse_encoder_decoder_attention(
        tensors,
        config,
        self_attn="{stack}.layers.{i}.self_attn.{p}_proj",
        self_fused="{stack}.layers.{i}.self_attn.qkv",
        cross_attn="decoder.layers.{i}.encoder_attn.{p}_proj",
        cross_fused="decoder.layers.{i}.encoder_attn.kv",
    )
    return rename(tensors, RULES, IGNORE, source=f"{architecture} checkpoint")


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config)
