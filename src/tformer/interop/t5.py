"""T5ForConditionalGeneration <-> tformer EncoderDecoderLM (T5 v1.0 relu, v1.1 gated-gelu, gated-silu).

T5 is pre-norm with bias-free RMSNorm ("T5LayerNorm") and bias-free projections; attention is unscaled
(the 1/sqrt(d) is folded into the initialisation) and positions are learned relative-position buckets stored
in layer 0 of each stack and shared by all its layers.
"""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.interop.common import (
    Converter,
    Rule,
    Tensors,
    activation_from_hf,
    activation_to_hf,
    drop_tied,
    export_names,
    fuse_encoder_decoder_attention,
    merge_alias,
    rename,
    require,
    split_encoder_decoder_attention,
    stores_distinct,
)

MODEL_TYPE = "t5"


def _feed_forward(proj: str) -> tuple[str, bool]:
    """(activation, gated) of ``feed_forward_proj``: ``"relu"``, ``"gated-gelu"``, ``"gated-silu"``..."""
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ConfigError(f"T5 feed_forward_proj={proj!r} is not of the form 'ACT' or 'gated-ACT'")
    # transformers maps "gated-gelu" to the tanh approximation for backwards compatibility (T5 v1.1)
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    return activation_from_hf(act), len(parts) == 2


def _scale_decoder_outputs(hf: dict[str, Any]) -> bool:
    """T5's d_model**-0.5 rescaling before the LM head, as transformers 5 derives it.

    An explicit ``scale_decoder_outputs`` (written by transformers 5) wins; older files imply it by
    ``tie_word_embeddings`` (v1.0 ties and scales, v1.1 unties and does not).
    """
    if "scale_decoder_outputs" in hf:
        return bool(hf["scale_decoder_outputs"])
    return hf.get("tie_word_embeddings", True) is not False


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The EncoderDecoderLM config of a T5 config.json."""
    activation, gated = _feed_forward(hf.get("feed_forward_proj", "relu"))
    n_layers = require(hf, "num_layers")
    pad = hf.get("pad_token_id", 0)
    dropout = hf.get("dropout_rate", 0.1)
    return ModelConfig(
        arch="encoder_decoder",
        vocab_size=require(hf, "vocab_size"),
        d_model=require(hf, "d_model"),
        n_layers=n_layers,
        n_decoder_layers=hf.get("num_decoder_layers") or n_layers,
        n_heads=require(hf, "num_heads"),
        head_dim=require(hf, "d_kv"),
        d_ff=require(hf, "d_ff"),
        # relative positions have no hard limit; n_positions is the length T5 was trained at
        max_seq_len=hf.get("n_positions", 512),
        position="t5_relative",
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        attn_bias=False,
        attn_out_bias=False,
        attn_scale=1.0,
        norm="rmsnorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        norm_bias=False,
        norm_placement="pre",
        final_norm=True,
        activation=activation,
        gated_ffn=gated,
        ffn_bias=False,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        scale_decoder_outputs=_scale_decoder_outputs(hf),
        dropout=dropout,
        attn_dropout=dropout,
        init="t5",
        pad_token_id=pad,
        eos_token_id=hf.get("eos_token_id", 1),
        bos_token_id=hf.get("bos_token_id"),
        # T5 starts decoding with the pad token when a config does not say otherwise
        decoder_start_token_id=hf.get("decoder_start_token_id", pad),
        extra={"hf_architecture": architecture},
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Tie the LM head exactly when transformers 5 does: unless the file stores a different ``lm_head.weight``.

    transformers 5 always sets ``tie_word_embeddings=True`` for T5 (and writes it so), so config.json cannot
    tell a re-saved v1.1 model from a v1.0 one; the tensors can.
    """
    tied = "lm_head.weight" not in tensors or not stores_distinct(tensors, "lm_head.weight", "shared.weight")
    return config if tied == config.tie_word_embeddings else config.replace(tie_word_embeddings=tied)


def _stack_rules(stack: str, ffn: int, gated: bool) -> list[Rule]:
    """Rules for one stack; the feed-forward is sub-layer 1 in the encoder and 2 in the decoder.

    A gated feed-forward stores ``wi_0`` (gate) and ``wi_1`` (up), a plain one ``wi``.
    """
    b, out = rf"{stack}\.block\.(\d+)\.layer\.", rf"{stack}.layers.\1."
    dense = rf"{ffn}\.DenseReluDense\."
    up: list[Rule] = (
        [
            (b + dense + r"wi_0\.weight", out + "ffn.gate.weight", None),
            (b + dense + r"wi_1\.weight", out + "ffn.up.weight", None),
        ]
        if gated
        else [(b + dense + r"wi\.weight", out + "ffn.up.weight", None)]
    )
    return [
        (
            rf"{stack}\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
            f"{stack}.position_bias.embedding.weight",
            None,
        ),
        (b + r"0\.qkv\.weight", out + "attn.qkv_proj.weight", None),
        (b + r"0\.SelfAttention\.o\.weight", out + "attn.o_proj.weight", None),
        (b + r"0\.layer_norm\.weight", out + "attn_norm.weight", None),
        *up,
        (b + dense + r"wo\.weight", out + "ffn.down.weight", None),
        (b + rf"{ffn}\.layer_norm\.weight", out + "ffn_norm.weight", None),
        (rf"{stack}\.final_layer_norm\.weight", f"{stack}.norm.weight", None),
    ]


_X = r"decoder\.block\.(\d+)\.layer\.1\."


def _rules(config: ModelConfig) -> list[Rule]:
    """Every rule of a T5 with this config's kind of feed-forward."""
    return [
        (r"shared\.weight", "shared.weight", None),
        *_stack_rules("encoder", 1, config.gated_ffn),
        *_stack_rules("decoder", 2, config.gated_ffn),
        (_X + r"EncDecAttention\.q\.weight", r"decoder.layers.\1.cross_attn.q_proj.weight", None),
        (_X + r"kv\.weight", r"decoder.layers.\1.cross_attn.kv_proj.weight", None),
        (_X + r"EncDecAttention\.o\.weight", r"decoder.layers.\1.cross_attn.o_proj.weight", None),
        (_X + r"layer_norm\.weight", r"decoder.layers.\1.cross_attn_norm.weight", None),
        (r"lm_head\.weight", "lm_head.weight", None),
    ]


# an unused bias that some files carry on the first cross-attention (transformers ignores it too)
IGNORE = [r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight"]


# where q/k/v live in T5's files, and where fuse_encoder_decoder_attention puts them fused
_ATTENTION = dict(
    self_attn="{stack}.block.{i}.layer.0.SelfAttention.{p}",
    self_fused="{stack}.block.{i}.layer.0.qkv",
    cross_attn="decoder.block.{i}.layer.1.EncDecAttention.{p}",
    cross_fused="decoder.block.{i}.layer.1.kv",
)


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map T5 tensor names onto EncoderDecoderLM, fusing self-attention q/k/v and cross-attention k/v."""
    tensors = dict(tensors)
    for stack in ("encoder", "decoder"):
        tensors = merge_alias(tensors, f"{stack}.embed_tokens.weight", "shared.weight")
    tensors = drop_tied(tensors, "lm_head.weight", config.tie_word_embeddings)
    tensors = fuse_encoder_decoder_attention(tensors, config, **_ATTENTION)
    return rename(tensors, _rules(config), IGNORE, source=f"{architecture} checkpoint")


def _feed_forward_proj(config: ModelConfig) -> str:
    """The inverse of :func:`_feed_forward`: ``"relu"``, ``"gated-gelu"`` (tanh GELU), ``"gated-silu"``..."""
    if not config.gated_ffn:
        return activation_to_hf(config.activation)
    if config.activation == "gelu":
        raise ConfigError(
            "T5 has no gated exact-GELU feed-forward ('gated-gelu' is the tanh approximation); "
            "activation='gelu_tanh' exports as 'gated-gelu'"
        )
    return "gated-" + ("gelu" if config.activation == "gelu_tanh" else config.activation)


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The T5 config.json of an EncoderDecoderLM (what :func:`config_from_hf` reads back)."""
    return {
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "d_kv": config.head_dim,
        "d_ff": config.d_ff,
        "num_layers": config.n_layers,
        "num_decoder_layers": config.n_decoder_layers,
        "num_heads": config.n_heads,
        "n_positions": config.max_seq_len,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "feed_forward_proj": _feed_forward_proj(config),
        "tie_word_embeddings": config.tie_word_embeddings,
        "scale_decoder_outputs": config.scale_decoder_outputs,
        "is_encoder_decoder": True,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "bos_token_id": config.bos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
    }


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """EncoderDecoderLM tensors in T5's names, self-attention q/k/v and cross-attention k/v split."""
    return split_encoder_decoder_attention(
        export_names(tensors, _rules(config), architecture), config, **_ATTENTION
    )


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config, config_to_hf, state_dict_to_hf)
