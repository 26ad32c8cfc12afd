"""The registry of Hugging Face converters: the ``architectures`` name of a config.json -> its Converter.

Nothing here imports ``transformers``: the files are read and written directly. Building the model and loading
the converted weights is ``tformer.loading``'s job; writing a Hugging Face directory is
``tformer.interop.export``'s; interop maps configs and tensors, both ways.
"""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.interop import bart, bert, gpt2, llama, longformer, mixtral, t5, vit
from tformer.interop.common import Converter

# HF architecture name -> the converter of its family
CONVERTERS: dict[str, Converter] = {
    "GPT2LMHeadModel": gpt2.CONVERTER,
    "LlamaForCausalLM": llama.CONVERTER,
    "MistralForCausalLM": llama.CONVERTER,
    "MixtralForCausalLM": mixtral.CONVERTER,
    "BertModel": bert.CONVERTER,
    "BertForMaskedLM": bert.CONVERTER,
    "BertForSequenceClassification": bert.CONVERTER,
    "BertForTokenClassification": bert.CONVERTER,
    "T5ForConditionalGeneration": t5.CONVERTER,
    "BartForConditionalGeneration": bart.CONVERTER,
    "LongformerModel": longformer.CONVERTER,
    "LongformerForMaskedLM": longformer.CONVERTER,
    "ViTModel": vit.CONVERTER,
    "ViTForImageClassification": vit.CONVERTER,
}


# HF architecture -> its config.json ``model_type``
MODEL_TYPES: dict[str, str] = {
    "GPT2LMHeadModel": gpt2.MODEL_TYPE,
    **llama.MODEL_TYPES,
    "MixtralForCausalLM": mixtral.MODEL_TYPE,
    **{arch: bert.MODEL_TYPE for arch in bert.HEADS},
    "T5ForConditionalGeneration": t5.MODEL_TYPE,
    "BartForConditionalGeneration": bart.MODEL_TYPE,
}


def is_hf_config(raw: dict[str, Any]) -> bool:
    """Whether a parsed config.json looks like Hugging Face's (it names an architecture or a model type)."""
    return "architectures" in raw or "model_type" in raw


def architecture_of(raw: dict[str, Any]) -> str:
    """The supported architecture a config.json names, or a ConfigError listing the supported ones."""
    archs = raw.get("architectures") or []
    if not archs:
        raise ConfigError(
            f"config.json names no architecture (model_type={raw.get('model_type')!r}); "
            f"supported: {', '.join(CONVERTERS)}"
        )
    if archs[0] not in CONVERTERS:
        raise ConfigError(f"unsupported architecture {archs[0]!r}; supported: {', '.join(CONVERTERS)}")
    return archs[0]


def converter(raw: dict[str, Any]) -> tuple[str, Converter]:
    """The architecture a config.json names and its converter."""
    arch = architecture_of(raw)
    return arch, CONVERTERS[arch]


def config_from_hf(raw: dict[str, Any]) -> ModelConfig:
    """The tformer ModelConfig of a Hugging Face config.json dict."""
    arch, conv = converter(raw)
    return conv.config_from_hf(raw, arch)
