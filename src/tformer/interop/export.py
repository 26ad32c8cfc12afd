"""Export to Hugging Face: a directory that ``transformers`` loads with its Auto classes.

The directory holds config.json (``architectures``, ``model_type`` and the architecture's fields),
model.safetensors (Hugging Face's tensor names, ``{"format": "pt"}`` metadata, tied heads left out),
generation_config.json (the special-token ids and the model's generation defaults) and, when a tokenizer is
given, its files (tokenizer.json, tokenizer_config.json and the classic vocabulary files).

Which architecture: the one the model was imported from (``config.extra["hf_architecture"]``), else the one
whose layout its components have (decoder: GPT-2, Llama, Mistral with a sliding window, Mixtral with experts;
encoder: the BERT class of its head; encoder-decoder: T5 with relative positions, else BART). Whether it can:
the exported config.json is read back by the family's import converter and must give the same model; a
component that does not survive that round trip has no equivalent in the architecture and the error names it.
Everything is converted before anything is written, and a directory holding another model is refused unless
``overwrite``: an error leaves the directory as it was.

This module registers the ``"hf"`` save format, so ``model.save_pretrained(path, format="hf")`` reaches it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError
from tformer.generation.hf_config import FILE_NAME as GENERATION_CONFIG_NAME
from tformer.generation.hf_config import to_hf_dict
from tformer.interop import bert
from tformer.interop.common import Tensors
from tformer.interop.hf import CONVERTERS, MODEL_TYPES
from tformer.interop.lazy import InMemory
from tformer.io import CONFIG_NAME, WEIGHTS_NAME, atomic_write, unique_state_dict, write_safetensors
from tformer.models import TransformerModel
from tformer.models.formats import register_save_format
from tformer.tokenizers import Tokenizer
from tformer.tokenizers.formats import tformer_document
from tformer.tokenizers.hf_format import hf_files

# BERT head -> the architecture holding it
BERT_BY_HEAD = {head: arch for arch, (head, _) in bert.HEADS.items()}
ENCODER_DECODERS = ("T5ForConditionalGeneration", "BartForConditionalGeneration")
# ModelConfig fields that do not change what a trained model computes: they need not round-trip
_NOT_COMPARED = ("extra", "attn_impl", "init", "init_std", "dropout", "attn_dropout")
# the transformers Auto class that loads each architecture
AUTO_CLASSES = {
    "GPT2LMHeadModel": "AutoModelForCausalLM",
    "LlamaForCausalLM": "AutoModelForCausalLM",
    "MistralForCausalLM": "AutoModelForCausalLM",
    "MixtralForCausalLM": "AutoModelForCausalLM",
    "BertModel": "AutoModel",
    "BertForMaskedLM": "AutoModelForMaskedLM",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForTokenClassification": "AutoModelForTokenClassification",
    "T5ForConditionalGeneration": "AutoModelForSeq2SeqLM",
    "BartForConditionalGeneration": "AutoModelForSeq2SeqLM",
}
# files of a model directory (tformer's or Hugging Face's): their presence means the directory holds a model
MODEL_FILES = (
    CONFIG_NAME,
    WEIGHTS_NAME,
    "model.safetensors.index.json",
    "pytorch_model.bin",
    GENERATION_CONFIG_NAME,
    "tformer_tokenizer.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
)


def _family(architecture: str) -> str:
    """The ModelConfig ``arch`` of a Hugging Face architecture."""
    if architecture in BERT_BY_HEAD.values():
        return "encoder"
    return "encoder_decoder" if architecture in ENCODER_DECODERS else "decoder"


def architecture_for(config: ModelConfig) -> str:
    """The Hugging Face architecture to export a model of ``config`` as (see the module docstring)."""
    if config.arch == "encoder":
        return BERT_BY_HEAD[config.head]
    named = config.extra.get("hf_architecture")
    if named in CONVERTERS and _family(named) == config.arch:
        return named
    if config.arch == "encoder_decoder":
        return (
            "T5ForConditionalGeneration"
            if config.position == "t5_relative"
            else "BartForConditionalGeneration"
        )
    if config.n_experts:
        return "MixtralForCausalLM"
    if config.position == "rope":
        return "MistralForCausalLM" if config.sliding_window is not None else "LlamaForCausalLM"
    return "GPT2LMHeadModel"


def _behaviour(config: ModelConfig) -> dict[str, Any]:
    """The fields that decide what the model computes (those that matter for its kind of model)."""
    c = config.to_dict()
    for name in _NOT_COMPARED:
        c.pop(name, None)
    c["attn_scale"] = config.attention_scale  # None means 1/sqrt(head_dim): compare the value
    unused = {
        "rope_theta": config.position != "rope",
        "rope_scaling": config.position != "rope",
        "relative_attention_num_buckets": config.position != "t5_relative",
        "relative_attention_max_distance": config.position != "t5_relative",
        "position_offset": config.position != "learned",
        "n_experts_per_token": not config.n_experts,
        "n_decoder_layers": config.arch != "encoder_decoder",
        "decoder_start_token_id": config.arch != "encoder_decoder",
        "num_labels": config.head not in ("classification", "token_classification"),
        "tie_word_embeddings": config.arch == "encoder" and config.head != "mlm",
        "lm_head_bias": config.arch == "encoder",
        "scale_decoder_outputs": config.arch == "encoder",
    }
    return {k: v for k, v in c.items() if not unused.get(k, False)}


def hf_config(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The config.json of ``config`` as ``architecture``, checked to round-trip through the importer.

    Raises:
        ConfigError: the architecture has no equivalent of some component; the message names it.
    """
    if architecture not in CONVERTERS:
        raise ConfigError(f"unknown architecture {architecture!r}; exportable: {', '.join(CONVERTERS)}")
    conv = CONVERTERS[architecture]
    assert conv.config_to_hf is not None
    prefix = f"cannot export to Hugging Face {architecture}"
    try:
        fields = conv.config_to_hf(config, architecture)
        back = conv.config_from_hf(fields, architecture)
    except ConfigError as e:
        raise ConfigError(f"{prefix}: {e}") from None
    ours, theirs = _behaviour(config), _behaviour(back)
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        what = ", ".join(f"{k}={ours[k]!r} (it has {theirs.get(k)!r})" for k in differ)
        raise ConfigError(f"{prefix}: it has no equivalent of this model's {what}")
    return {"architectures": [architecture], "model_type": MODEL_TYPES[architecture], **fields}


def hf_tensors(model: TransformerModel, architecture: str) -> Tensors:
    """The model's tensors in ``architecture``'s names, as its model.safetensors holds them: lazy tensors over
    the model's own, each computed (split, transposed) only when it is written."""
    conv = CONVERTERS[architecture]
    assert conv.state_dict_to_hf is not None
    lazy = {name: InMemory(t) for name, t in unique_state_dict(model).items()}
    return conv.state_dict_to_hf(lazy, model.config, architecture)


def _existing_model_files(path: Path) -> list[Path]:
    found = [path / name for name in MODEL_FILES if (path / name).exists()]
    return found + sorted(path.glob("model-*-of-*.safetensors"))


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse a file, or a directory that holds another model unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a directory")
    existing = _existing_model_files(path) if path.is_dir() else []
    if existing and not overwrite:
        raise CheckpointError(
            f"{path} already holds a model ({existing[0].name}); pass overwrite=True (--overwrite) "
            "to replace it, or choose another directory"
        )


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_hf(
    model: TransformerModel,
    path: str | Path,
    *,
    tokenizer: Tokenizer | None = None,
    overwrite: bool = False,
    architecture: str | None = None,
) -> Path:
    """Write ``model`` (and ``tokenizer``) as a Hugging Face directory that ``transformers`` loads.

    Args:
        model: any tformer model whose components a Hugging Face architecture has.
        path: the directory (created if missing).
        tokenizer: also write its tokenizer.json, tokenizer_config.json and vocabulary files.
        overwrite: replace a model already in ``path`` (its other model files are removed).
        architecture: the Hugging Face class to export as (default: see :func:`architecture_for`).

    Returns:
        The directory.

    Raises:
        ConfigError: no Hugging Face equivalent for a component (named in the message).
        CheckpointError: ``path`` holds another model and ``overwrite`` is False.
    """
    path = Path(path)
    cfg = model.config
    architecture = architecture or architecture_for(cfg)
    config_json = {**hf_config(cfg, architecture), "dtype": str(model.dtype).removeprefix("torch.")}
    tensors = hf_tensors(model, architecture)
    texts = {GENERATION_CONFIG_NAME: json.dumps(to_hf_dict(model.generation_config, cfg), indent=2) + "\n"}
    if tokenizer is not None:
        texts.update(hf_files(tformer_document(tokenizer), model_max_length=cfg.max_seq_len))
    texts[CONFIG_NAME] = (
        json.dumps(config_json, indent=2) + "\n"
    )  # last: a directory is a model once it appears
    _check_target(path, overwrite)
    stale = _existing_model_files(path) if path.is_dir() else []
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_NAME, lambda tmp: write_safetensors(tmp, tensors, metadata={"format": "pt"}))
    for name, text in texts.items():
        _write_text(path / name, text)
    for old in stale:
        if old.name not in texts and old.name != WEIGHTS_NAME:
            old.unlink()
    return path


register_save_format("hf", save_hf)
