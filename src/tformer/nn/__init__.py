"""Generic Transformer building blocks, each usable on its own with plain arguments."""

from tformer.nn.attention import Attention, fused_attention, reference_attention, repeat_kv
from tformer.nn.block import TransformerBlock
from tformer.nn.embedding import InputEmbedding
from tformer.nn.feedforward import FeedForward, GatedFeedForward, get_activation, make_feedforward
from tformer.nn.kv_cache import KVCache, RollingKVCache, StaticKV
from tformer.nn.masks import allowed_positions, build_attention_mask
from tformer.nn.moe import MoEFeedForward, load_balancing_loss
from tformer.nn.norms import RMSNorm, make_norm
from tformer.nn.positions import (
    ALiBiBias,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    T5RelativeBias,
    alibi_slopes,
    apply_rotary,
    sinusoidal_table,
    t5_relative_bucket,
)
from tformer.nn.stack import TransformerStack

__all__ = [
    "ALiBiBias",
    "Attention",
    "FeedForward",
    "GatedFeedForward",
    "InputEmbedding",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MoEFeedForward",
    "load_balancing_loss",
    "RMSNorm",
    "RollingKVCache",
    "RotaryEmbedding",
    "SinusoidalPositionalEmbedding",
    "StaticKV",
    "T5RelativeBias",
    "TransformerBlock",
    "TransformerStack",
    "alibi_slopes",
    "allowed_positions",
    "apply_rotary",
    "build_attention_mask",
    "fused_attention",
    "get_activation",
    "make_feedforward",
    "make_norm",
    "reference_attention",
    "repeat_kv",
    "sinusoidal_table",
    "t5_relative_bucket",
]
