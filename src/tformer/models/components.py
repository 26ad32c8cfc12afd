"""Assembly helpers shared by the family builders: they read a ModelConfig and return components."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from tformer.config import ModelConfig
from tformer.nn import (
    ALiBiBias,
    Attention,
    InputEmbedding,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    T5RelativeBias,
    TransformerBlock,
    TransformerStack,
    make_feedforward,
    make_norm,
)
from tformer.nn.attention_kinds import make_attention_kind
from tformer.nn.moe import MoEFeedForward


def norm_factory(cfg: ModelConfig) -> Callable[[], nn.Module]:
    """A zero-argument callable making the configured norm at width d_model."""
    return lambda: make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, bias=cfg.norm_bias)


def make_attention(cfg: ModelConfig, cross: bool = False) -> Attention:
    """Self-attention (or cross-attention over an encoder's memory) with the configured heads and biases."""
    kind = None
    if not cross:  # cross-attention stays exact: its keys are the (short) encoder output
        kind = make_attention_kind(
            cfg.attention_kind,
            cfg.attention_params,
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.n_kv_heads,
            head_dim=cfg.head_dim,
            qkv_bias=cfg.attn_bias,
        )
    return Attention(
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        qkv_bias=cfg.attn_bias,
        out_bias=cfg.attn_out_bias,
        scale=cfg.attention_scale,
        dropout=cfg.attn_dropout,
        cross=cross,
        kind=kind,
    )


def make_block(cfg: ModelConfig, cross: bool = False) -> TransformerBlock:
    """One layer: attention, optional cross-attention, and a dense or mixture-of-experts feed-forward."""
    if cfg.n_experts:
        ffn: nn.Module = MoEFeedForward(
            cfg.d_model,
            cfg.d_ff,
            cfg.n_experts,
            cfg.n_experts_per_token,
            cfg.activation,
            cfg.gated_ffn,
            cfg.ffn_bias,
        )
    else:
        ffn = make_feedforward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.gated_ffn, cfg.ffn_bias)
    return TransformerBlock(
        make_attention(cfg),
        ffn,
        norm_factory(cfg),
        placement=cfg.norm_placement,
        dropout=cfg.dropout,
        cross_attn=make_attention(cfg, cross=True) if cross else None,
    )


def make_embedding(cfg: ModelConfig, tok: nn.Embedding) -> InputEmbedding:
    """Token embedding plus the configured absolute positions, segments, norm and dropout."""
    positions: nn.Module | None = None
    if cfg.position == "learned":
        positions = LearnedPositionalEmbedding(cfg.max_seq_len, cfg.d_model, offset=cfg.position_offset)
    elif cfg.position == "sinusoidal":
        positions = SinusoidalPositionalEmbedding(cfg.max_seq_len, cfg.d_model)
    return InputEmbedding(
        tok,
        scale=math.sqrt(cfg.d_model) if cfg.embed_scale else 1.0,
        positions=positions,
        token_types=nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None,
        norm=norm_factory(cfg)() if cfg.embedding_norm else None,
        dropout=cfg.dropout,
    )


def make_stack(
    cfg: ModelConfig, tok: nn.Embedding, n_layers: int, *, causal: bool, cross: bool = False
) -> TransformerStack:
    """Embeddings, n_layers blocks and the final norm, with the configured position scheme."""
    rotary = (
        RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling) if cfg.position == "rope" else None
    )
    bias: nn.Module | None = None
    if cfg.position == "alibi":
        bias = ALiBiBias(cfg.n_heads)
    elif cfg.position == "t5_relative":
        bias = T5RelativeBias(
            cfg.n_heads,
            cfg.relative_attention_num_buckets,
            cfg.relative_attention_max_distance,
            bidirectional=not causal,
        )
    return TransformerStack(
        make_embedding(cfg, tok),
        [make_block(cfg, cross=cross) for _ in range(n_layers)],
        norm_factory(cfg)() if cfg.final_norm else None,
        causal=causal,
        sliding_window=cfg.sliding_window,
        rotary=rotary,
        position_bias=bias,
    )
