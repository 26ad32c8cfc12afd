"""The three Transformer families, each assembled from the shared building blocks in ``tformer.nn``."""

from __future__ import annotations

from typing import Any

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.models.base import TransformerModel
from tformer.models.decoder import DecoderLM
from tformer.models.encoder import EncoderModel
from tformer.models.encoder_decoder import EncoderDecoderLM
from tformer.models.init import init_weights
from tformer.models.outputs import ModelOutput
from tformer.models.vit import ViTModel
from tformer.presets import get_preset

MODEL_CLASSES: dict[str, type[TransformerModel]] = {
    "decoder": DecoderLM,
    "encoder": EncoderModel,
    "encoder_decoder": EncoderDecoderLM,
    "vit": ViTModel,
}


def build(config: ModelConfig | str, init: bool = True, **overrides: Any) -> TransformerModel:
    """A freshly initialised model from a config or a preset name (with optional field overrides).

    Example: ``build("gpt-tiny", vocab_size=65)``.
    """
    if isinstance(config, str):
        config = get_preset(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build() takes a ModelConfig or a preset name, got {type(config).__name__}")
    model = MODEL_CLASSES[config.arch](config)
    if init:
        init_weights(model, config)
    model.set_attn_impl(config.attn_impl)
    return model


__all__ = [
    "DecoderLM",
    "EncoderDecoderLM",
    "EncoderModel",
    "ModelOutput",
    "TransformerModel",
    "ViTModel",
    "build",
]
