"""LongformerModel / LongformerForMaskedLM -> EncoderModel with ``attention_kind="local_global"``.

Longformer is RoBERTa (post-LN BERT layers, positions counted from ``pad_token_id + 1``) whose self-attention
sees a window of ``attention_window / 2`` tokens on each side plus the tokens marked in
``global_attention_mask``, which use their own ``query_global`` / ``key_global`` / ``value_global``
projections. Hugging Face pads inputs to a multiple of the window inside the model; tformer's blocked
window needs no padding and gives the same outputs on the real tokens.
Positions: HF numbers the non-padding tokens (``cumsum(input_ids != pad)``); tformer numbers every position,
which agrees for right-padded inputs.
"""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.interop import bert
from tformer.interop.bert import BODY_RULES, POOLER_RULES, pick_mlm_bias
from tformer.interop.common import (
    Converter,
    Rule,
    Tensors,
    drop_tied,
    fuse_qkv,
    rename,
    require,
    strip_prefix,
    untie_stored_head,
)

# the BERT architecture with the same head
BERT_EQUIVALENT = {"LongformerModel": "BertModel", "LongformerForMaskedLM": "BertForMaskedLM"}
MLM_WEIGHT, EMBEDDING = "lm_head.decoder.weight", "embeddings.word_embeddings.weight"


def one_sided_window(hf: dict[str, Any]) -> int:
    """Keys on each side of a query: half of ``attention_window`` (one even value shared by every layer)."""
    windows = require(hf, "attention_window")
    windows = set(windows) if isinstance(windows, list) else {windows}
    if len(windows) != 1:
        raise ConfigError(
            f"Longformer attention_window differs between layers ({sorted(windows)}); tformer supports one "
            "window for every layer"
        )
    window = windows.pop()
    if not isinstance(window, int) or window < 2 or window % 2:
        raise ConfigError(f"Longformer attention_window must be an even integer >= 2, got {window!r}")
    return window // 2


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The EncoderModel config of a Longformer config.json: BERT's, with RoBERTa's positions and the window."""
    base = bert.config_from_hf(hf, BERT_EQUIVALENT[architecture])
    if base.head == "mlm" and base.activation != "gelu":
        raise ConfigError(
            f"LongformerForMaskedLM's head always uses gelu but hidden_act={hf.get('hidden_act')!r}; "
            "tformer's head shares the layers' activation"
        )
    pad = hf.get("pad_token_id", 1)
    offset = pad + 1  # RoBERTa positions start after the padding index
    return base.replace(
        max_seq_len=require(hf, "max_position_embeddings") - offset,
        position_offset=offset,
        pad_token_id=pad,
        attention_kind="local_global",
        attention_params={"window": one_sided_window(hf), "global_projections": True},
        extra={"hf_architecture": architecture},
    )


def refine_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """Untie the MLM decoder when the file stores it apart from the word embeddings (as transformers 5 does)."""
    if config.head != "mlm":
        return config  # only the MLM head is tied
    return untie_stored_head(config, strip_prefix(tensors, ["longformer."]), MLM_WEIGHT, EMBEDDING)


GLOBAL_RULES: list[Rule] = [
    (r"encoder\.layer\.(\d+)\.global_qkv\.(weight|bias)", r"body.layers.\1.attn.kind.global_qkv.\2", None)
]
MLM_RULES: list[Rule] = [
    (r"lm_head\.dense\.(weight|bias)", r"head.dense.\1", None),
    (r"lm_head\.layer_norm\.(weight|bias)", r"head.norm.\1", None),
    (r"lm_head\.decoder\.weight", r"head.decoder.weight", None),
    (r"head\.decoder\.bias", r"head.decoder.bias", None),
]


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map Longformer tensor names onto EncoderModel, fusing the local and the global q/k/v."""
    tensors = strip_prefix(tensors, ["longformer."])
    for names, dst in (
        (("query", "key", "value"), "encoder.layer.{i}.qkv"),
        (("query_global", "key_global", "value_global"), "encoder.layer.{i}.global_qkv"),
    ):
        tensors = fuse_qkv(tensors, config.n_layers, "encoder.layer.{i}.attention.self.{p}", dst, names=names)
    rules = BODY_RULES + GLOBAL_RULES
    ignore = [r"embeddings\.position_ids", r"embeddings\.token_type_ids"]
    if config.pooler:
        rules = rules + POOLER_RULES
    else:
        ignore.append(r"pooler\.dense\..*")
    if config.head == "mlm":
        tensors = pick_mlm_bias(
            drop_tied(tensors, MLM_WEIGHT, config.tie_word_embeddings), "lm_head.", architecture
        )
        rules = rules + MLM_RULES
    return rename(tensors, rules, ignore, source=f"{architecture} checkpoint")


CONVERTER = Converter(config_from_hf, state_dict_from_hf, refine_config)
