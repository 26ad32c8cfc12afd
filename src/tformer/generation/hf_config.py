"""``generation_config.json``: a model directory's generation defaults, in Hugging Face's file format.

Hugging Face writes the options that differ from its defaults (plus bookkeeping keys); ``generate`` applies
them under the caller's options. tformer reads the options it implements, ignores the bookkeeping, and logs
the options it does not implement when they are set to anything but Hugging Face's default. It writes the
options that differ from its own defaults, plus the model's special-token ids.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tformer.config import ModelConfig
from tformer.generation.config import GenerationConfig, GenerationError

log = logging.getLogger(__name__)

FILE_NAME = "generation_config.json"

# tformer options that Hugging Face's GenerationConfig does not have
_TFORMER_ONLY = frozenset({"seed"})
# keys Hugging Face writes that tformer's decoding does not read (an empty prompt starts from the model
# config's bos_token_id)
_BOOKKEEPING = frozenset(
    {
        "transformers_version",
        "_from_model_config",
        "output_attentions",
        "output_hidden_states",
        "return_legacy_cache",
        "bos_token_id",
    }
)
# Hugging Face options tformer does not implement, with the value that turns each off
_UNSUPPORTED_OFF: dict[str, Any] = {
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "guidance_scale": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "penalty_alpha": None,
    "top_h": None,
    "constraints": None,
    "force_words_ids": None,
    "watermarking_config": None,
    "cache_implementation": None,
    "max_time": None,
}


def from_hf_dict(doc: dict[str, Any], source: str = FILE_NAME) -> GenerationConfig:
    """The GenerationConfig of a parsed ``generation_config.json``.

    Raises:
        GenerationError: an option tformer implements has an invalid value (the message names ``source``).
    """
    known = set(GenerationConfig.option_names())  # tformer's own (seed) too: its directories use this file
    options: dict[str, Any] = {}
    for key, value in doc.items():
        if key in known:
            options[key] = value
        elif key not in _BOOKKEEPING and _UNSUPPORTED_OFF.get(key, None) != value:
            log.warning("%s sets %s=%r, which tformer does not implement; ignored", source, key, value)
    if options.get("top_k") == 0:  # Hugging Face's "no top-k"
        options["top_k"] = None
    try:
        return GenerationConfig(**options)
    except GenerationError as e:
        raise GenerationError(f"{source}: {e}") from None


def to_hf_dict(config: GenerationConfig, model_config: ModelConfig) -> dict[str, Any]:
    """The ``generation_config.json`` of a model: its explicit options and its special-token ids."""
    doc: dict[str, Any] = {
        name: getattr(model_config, name)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
        if getattr(model_config, name) is not None
        and (name != "decoder_start_token_id" or model_config.arch == "encoder_decoder")
    }
    doc.update({k: v for k, v in config.explicit().items() if k not in _TFORMER_ONLY})
    return doc


def read_generation_config(directory: str | Path) -> GenerationConfig | None:
    """The defaults in ``directory/generation_config.json``, or None when there is no such file.

    Raises:
        GenerationError: the file is not valid JSON or holds an invalid option.
    """
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GenerationError(f"{path} is not a readable JSON file: {e}") from None
    if not isinstance(doc, dict):
        raise GenerationError(f"{path} must hold a JSON object of generation options")
    return from_hf_dict(doc, str(path))
