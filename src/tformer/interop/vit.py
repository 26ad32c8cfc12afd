"""ViTForImageClassification / ViTModel <-> tformer ViTModel.

Files use the hub names (``vit.encoder.layer.N.attention.attention.query``), which transformers 5 still reads
and writes although it renames the layers in memory. ViTModel files have no ``vit.`` prefix and a pooler.
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
    fuse_qkv,
    rename,
    require,
    strip_prefix,
)

# HF architecture -> (tformer head, pooler)
HEADS = {"ViTModel": ("none", True), "ViTForImageClassification": ("classification", False)}


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The ViTModel config of a ViT config.json; the architecture picks head and pooler."""
    if not hf.get("qkv_bias", True):
        raise ConfigError("ViT option qkv_bias=false is not supported")
    head, pooler = HEADS[architecture]
    if architecture == "ViTModel" and hf.get("pooler_act", "tanh") != "tanh":
        raise ConfigError(f"ViT pooler_act={hf['pooler_act']!r} is not supported; only 'tanh'")
    image_size, patch_size = require(hf, "image_size"), require(hf, "patch_size")
    num_labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2)
    return ModelConfig(
        arch="vit",
        vocab_size=1,
        d_model=require(hf, "hidden_size"),
        n_layers=require(hf, "num_hidden_layers"),
        n_heads=require(hf, "num_attention_heads"),
        d_ff=require(hf, "intermediate_size"),
        max_seq_len=(image_size // patch_size) ** 2 + 1,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=hf.get("num_channels", 3),
        position="none",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_placement="pre",
        activation=activation_from_hf(hf.get("hidden_act", "gelu")),
        head=head,
        pooler=pooler,
        num_labels=num_labels,
        tie_word_embeddings=False,
        dropout=hf.get("hidden_dropout_prob", 0.0),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        extra={"hf_architecture": architecture, "labels": _labels(hf, num_labels)},
    )


def _labels(hf: dict[str, Any], n: int) -> list[str]:
    id2label = hf.get("id2label") or {}
    return [str(id2label.get(str(i), id2label.get(i, i))) for i in range(n)]


_L = r"encoder\.layer\.(\d+)\."
RULES: list[Rule] = [
    (r"embeddings\.cls_token", r"embed.cls_token", None),
    (r"embeddings\.position_embeddings", r"embed.positions", None),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"embed.projection.\1", None),
    (_L + r"qkv\.(weight|bias)", r"layers.\1.attn.qkv_proj.\2", None),
    (_L + r"attention\.output\.dense\.(weight|bias)", r"layers.\1.attn.o_proj.\2", None),
    (_L + r"layernorm_before\.(weight|bias)", r"layers.\1.attn_norm.\2", None),
    (_L + r"intermediate\.dense\.(weight|bias)", r"layers.\1.ffn.up.\2", None),
    (_L + r"output\.dense\.(weight|bias)", r"layers.\1.ffn.down.\2", None),
    (_L + r"layernorm_after\.(weight|bias)", r"layers.\1.ffn_norm.\2", None),
    (r"layernorm\.(weight|bias)", r"norm.\1", None),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1", None),
    (r"classifier\.(weight|bias)", r"head.\1", None),
]


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map ViT tensor names onto tformer's ViTModel, fusing query/key/value."""
    tensors = strip_prefix(tensors, ["vit."])
    tensors = fuse_qkv(
        tensors,
        config.n_layers,
        "encoder.layer.{i}.attention.attention.{p}",
        "encoder.layer.{i}.qkv",
        names=("query", "key", "value"),
    )
    ignore = [] if config.pooler else [r"pooler\.dense\..*"]
    return rename(tensors, RULES, ignore, source=f"{architecture} checkpoint")


CONVERTER = Converter(config_from_hf, state_dict_from_hf)
