"""BertModel / BertForMaskedLM / BertForSequenceClassification / BertForTokenClassification <-> EncoderModel.

BERT is post-LN with learned absolute positions, token-type (segment) embeddings, a LayerNorm on the
embeddings and no final norm. Keys may carry the ``bert.`` prefix (head models) or not (bare files).
"""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError
from tformer.interop.common import (
    Converter,
    Rule,
    Tensors,
    activation_from_hf,
    activation_to_hf,
    add_prefix,
    drop_tied,
    export_names,
    fuse_qkv,
    rename,
    require,
    special_ids,
    split_qkv,
    strip_prefix,
    untie_stored_head,
)

MODEL_TYPE = "bert"

# HF architecture -> (tformer head, pooler)
HEADS = {
    "BertModel": ("none", True),
    "BertForMaskedLM": ("mlm", False),
    "BertForSequenceClassification": ("classification", True),
    "BertForTokenClassification": ("token_classification", False),
}
MLM_WEIGHT, EMBEDDING = "cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The EncoderModel config of a BERT config.json; the architecture picks head and pooler."""
    for flag in ("is_decoder", "add_cross_attention"):
        if hf.get(flag):
            raise ConfigError(
                f"BERT option {flag}=true is not supported: tformer's BERT is a bidirectional encoder"
            )
    positions = hf.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise ConfigError(f"BERT position_embedding_type={positions!r} is not supported; only 'absolute'")
    head, pooler = HEADS[architecture]
    # config.json stores the labels (id2label); num_labels is derived from them in transformers
    num_labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2)
    return ModelConfig(
        arch="encoder",
        vocab_size=require(hf, "vocab_size"),
        d_model=require(hf, "hidden_size"),
        n_layers=require(hf, "num_hidden_layers"),
        n_heads=require(hf, "num_attention_heads"),
        d_ff=require(hf, "intermediate_size"),
        max_seq_len=hf.get("max_position_embeddings", 512),
        position="learned",
        norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_placement="post",
        final_norm=False,
        activation=activation_from_hf(hf.get("hidden_act", "gelu")),
        embedding_norm=True,
        type_vocab_size=hf.get("type_vocab_size", 2),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        head=head,
        pooler=pooler,
        num_labels=num_labels,
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id"),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        # the label names, which tformer does not use, are kept so that an export gives them back
        extra={
            "hf_architecture": architecture,
            **({"id2label": hf["id2label"]} if hf.get("id2label") else {}),
        },
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Untie the MLM decoder when the file stores it apart from the word embeddings (as transformers 5 does)."""
    if config.head != "mlm":
        return config  # only the MLM head is tied
    return untie_stored_head(config, strip_prefix(tensors, ["bert."]), MLM_WEIGHT, EMBEDDING)


_L = r"encoder\.layer\.(\d+)\."
BODY_RULES: list[Rule] = [
    (r"embeddings\.word_embeddings\.weight", r"body.embed.tok.weight", None),
    (r"embeddings\.position_embeddings\.weight", r"body.embed.positions.weight", None),
    (r"embeddings\.token_type_embeddings\.weight", r"body.embed.token_types.weight", None),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"body.embed.norm.\1", None),
    (_L + r"qkv\.(weight|bias)", r"body.layers.\1.attn.qkv_proj.\2", None),
    (_L + r"attention\.output\.dense\.(weight|bias)", r"body.layers.\1.attn.o_proj.\2", None),
    (_L + r"attention\.output\.LayerNorm\.(weight|bias)", r"body.layers.\1.attn_norm.\2", None),
    (_L + r"intermediate\.dense\.(weight|bias)", r"body.layers.\1.ffn.up.\2", None),
    (_L + r"output\.dense\.(weight|bias)", r"body.layers.\1.ffn.down.\2", None),
    (_L + r"output\.LayerNorm\.(weight|bias)", r"body.layers.\1.ffn_norm.\2", None),
]
POOLER_RULES: list[Rule] = [(r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1", None)]
MLM_RULES: list[Rule] = [
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"head.dense.\1", None),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"head.norm.\1", None),
    (r"cls\.predictions\.decoder\.weight", r"head.decoder.weight", None),
    (r"head\.decoder\.bias", r"head.decoder.bias", None),
]
# the classifier sits after a dropout in tformer's nn.Sequential head
CLASSIFIER_RULES: list[Rule] = [(r"classifier\.(weight|bias)", r"head.1.\1", None)]


def _ignored(config: ModelConfig) -> list[str]:
    """Tensors this architecture does not use but standard checkpoints carry (HF skips them with a warning)."""
    # non-persistent buffers in old files, and BertForPreTraining's next-sentence head
    ignore = [r"embeddings\.position_ids", r"embeddings\.token_type_ids", r"cls\.seq_relationship\..*"]
    if not config.pooler:
        ignore.append(r"pooler\.dense\..*")  # bert-base-uncased ships a pooler even for BertForMaskedLM
    if config.head != "mlm":
        ignore.append(r"cls\.predictions\..*")
    return ignore


def pick_mlm_bias(
    tensors: Tensors, prefix: str = "cls.predictions.", architecture: str = "BertForMaskedLM"
) -> Tensors:
    """The output bias: ``{prefix}decoder.bias`` is what HF's forward adds; ``{prefix}bias`` is its tied twin.

    A file may hold either or both; the result holds it once, as ``head.decoder.bias``.
    """
    decoder_bias = tensors.pop(f"{prefix}decoder.bias", None)
    bias = tensors.pop(f"{prefix}bias", None)
    chosen = decoder_bias if decoder_bias is not None else bias
    if chosen is None:
        raise CheckpointError(f"{architecture} checkpoint is missing weight '{prefix}bias'")
    tensors["head.decoder.bias"] = chosen
    return tensors


def _rules(config: ModelConfig) -> list[Rule]:
    """The rules of the body and of the pooler and head this config has."""
    rules = list(BODY_RULES)
    if config.pooler:
        rules += POOLER_RULES
    if config.head == "mlm":
        rules += MLM_RULES
    elif config.head in ("classification", "token_classification"):
        rules += CLASSIFIER_RULES
    return rules


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map BERT tensor names onto tformer's EncoderModel, fusing query/key/value."""
    tensors = strip_prefix(tensors, ["bert."])
    tensors = fuse_qkv(
        tensors,
        config.n_layers,
        "encoder.layer.{i}.attention.self.{p}",
        "encoder.layer.{i}.qkv",
        names=("query", "key", "value"),
    )
    if config.head == "mlm":
        tensors = pick_mlm_bias(drop_tied(tensors, MLM_WEIGHT, config.tie_word_embeddings))
    return rename(tensors, _rules(config), _ignored(config), source=f"{architecture} checkpoint")


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The BERT config.json of an EncoderModel (what :func:`config_from_hf` reads back)."""
    out: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.d_ff,
        "max_position_embeddings": config.max_seq_len,
        "position_embedding_type": "absolute",
        "layer_norm_eps": config.norm_eps,
        "hidden_act": activation_to_hf(config.activation),
        "type_vocab_size": config.type_vocab_size,
        "tie_word_embeddings": config.tie_word_embeddings,
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attn_dropout,
        **special_ids(config),
    }
    names = config.extra.get("id2label") or {}
    id2label = {str(i): names.get(str(i), f"LABEL_{i}") for i in range(config.num_labels)}
    return out | {"id2label": id2label, "label2id": {name: int(i) for i, name in id2label.items()}}


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """EncoderModel tensors in BERT's names: q/k/v split, ``bert.`` before the body of head models."""
    tensors = export_names(tensors, _rules(config), architecture)
    if "head.decoder.bias" in tensors:  # the MLM output bias is stored as cls.predictions.bias
        tensors["cls.predictions.bias"] = tensors.pop("head.decoder.bias")
    d = config.n_heads * config.head_dim
    tensors = split_qkv(
        tensors,
        config.n_layers,
        "encoder.layer.{i}.qkv",
        "encoder.layer.{i}.attention.self.{p}",
        (d, d, d),
        names=("query", "key", "value"),
    )
    if architecture == "BertModel":
        return tensors
    return add_prefix(tensors, "bert.", keep=["cls.", "classifier."])


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config, config_to_hf, state_dict_to_hf)
