"""Load a Hugging Face model directory: pick the converter by ``architectures``, map config and weights.

Nothing here imports ``transformers``: the files are read directly.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError

# HF architecture name -> converter module in tformer.interop
ARCHITECTURES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "MixtralForCausalLM": "mixtral",
    "BertModel": "bert",
    "BertForMaskedLM": "bert",
    "BertForSequenceClassification": "bert",
    "BertForTokenClassification": "bert",
    "T5ForConditionalGeneration": "t5",
    "BartForConditionalGeneration": "bart",
    "ViTModel": "vit",
    "ViTForImageClassification": "vit",
}


def architecture_of(raw: dict[str, Any]) -> str:
    archs = raw.get("architectures") or []
    if not archs:
        raise ConfigError(
            f"config.json names no architecture (model_type={raw.get('model_type')!r}); "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    if archs[0] not in ARCHITECTURES:
        raise ConfigError(f"unsupported architecture {archs[0]!r}; supported: {', '.join(ARCHITECTURES)}")
    return archs[0]


def converter(architecture: str):
    return importlib.import_module(f"tformer.interop.{ARCHITECTURES[architecture]}")


def config_from_hf(raw: dict[str, Any]):
    """The tformer ModelConfig of a Hugging Face config.json dict."""
    arch = architecture_of(raw)
    return converter(arch).config_from_hf(raw, arch)


def load_hf_directory(path: Path, raw: dict[str, Any]):
    """Build the tformer model of an HF directory and load its converted weights."""
    from tformer.io import load_weights, read_weights
    from tformer.models import build

    arch = architecture_of(raw)
    module = converter(arch)
    config = module.config_from_hf(raw, arch)
    weights = read_weights(path)
    # transformers 5 decides some tying from the file, not config.json (a head stored apart from the embedding)
    if hasattr(module, "refine_config"):
        config = module.refine_config(config, weights, arch)
    model = build(config, init=False)
    tensors = module.state_dict_from_hf(weights, config, arch)
    load_weights(model, tensors, source=f"{arch} checkpoint in {path}")
    return model
