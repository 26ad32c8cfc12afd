"""The three Transformer families, each assembled from the shared building blocks in ``tformer.nn``."""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.models.base import TransformerModel
from tformer.models.decoder import DecoderLM
from tformer.models.encoder import EncoderModel
from tformer.models.encoder_decoder import EncoderDecoderLM
from tformer.models.init import init_weights, reset_buffers
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


# The in-place fills module constructors run to initialise weights (tensor methods and torch.nn.init).
_INIT_FILLS = frozenset(
    "normal_ uniform_ zero_ fill_ random_ copy_ trunc_normal_ constant_ ones_ zeros_ eye_ dirac_ "
    "kaiming_uniform_ kaiming_normal_ xavier_uniform_ xavier_normal_ orthogonal_ sparse_".split()
)


class _SkipInitOnMeta(TorchFunctionMode):
    """Skip weight-initialising fills of meta tensors: there is nothing to fill, yet torch runs some of them
    (``normal_``, ``uniform_``) through Python reference code that imports ``torch._dynamo`` on first use
    (seconds and ~70 MB). (A constructor that computes on its weights, as Linformer's ``randn(...) / sqrt(k)``,
    still pays that import once.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by keyword
        if (
            getattr(func, "__name__", None) in _INIT_FILLS
            and isinstance(target, torch.Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **kwargs)


def build_empty(config: ModelConfig) -> TransformerModel:
    """The model of ``config`` with every tensor on the meta device: its structure and tied weights, no memory
    and no initialisation. A loader assigns the weights, then calls :func:`reset_buffers`."""
    with torch.device("meta"), _SkipInitOnMeta():
        model = MODEL_CLASSES[config.arch](config)
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
    "build_empty",
    "reset_buffers",
]
