"""Load and save models: tformer's own directories and Hugging Face's.

A directory holds ``config.json`` and weights. tformer's config.json has ``"format": "tformer"`` (see
``tformer.io``); one with ``"architectures"`` / ``"model_type"`` is converted by the family converter that
``tformer.interop.hf.CONVERTERS`` names. This module decides which, builds the model and loads the weights,
and the generation defaults of a ``generation_config.json`` in either kind of directory.

Saving: ``save_pretrained(model, path, format="tformer" | "hf")``. The formats are a registry in
``tformer.models.formats``; importing ``tformer.interop.export`` here registers ``"hf"``, so
``model.save_pretrained(path, format="hf")`` works as soon as ``tformer`` is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tformer import io
from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError
from tformer.generation.hf_config import read_generation_config
from tformer.interop import export, hf
from tformer.models import TransformerModel, build


def _model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass a directory holding config.json and weights")
    return path


def _not_a_model_config(path: Path) -> ConfigError:
    return ConfigError(f"{path / io.CONFIG_NAME} is neither a tformer nor a Hugging Face config")


def read_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a model directory in either format, without reading its weights."""
    path = _model_dir(path)
    raw = io.read_config(path)
    if io.is_tformer_config(raw):
        return io.tformer_config(raw, path)
    if hf.is_hf_config(raw):
        return hf.config_from_hf(raw)
    raise _not_a_model_config(path)


def _load_hf(path: Path, raw: dict[str, Any]) -> TransformerModel:
    """Build the tformer model of a Hugging Face directory and load its converted weights."""
    arch, conv = hf.converter(raw)
    config = conv.config_from_hf(raw, arch)
    weights = io.read_weights(path)
    config = conv.refine_config(config, weights, arch)
    model = build(config, init=False)
    io.load_weights(
        model, conv.state_dict_from_hf(weights, config, arch), source=f"{arch} checkpoint in {path}"
    )
    return model


def from_pretrained(
    path: str | Path,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    attn_impl: str | None = None,
) -> TransformerModel:
    """Load a model directory (tformer or Hugging Face format) and return the model in eval mode."""
    path = _model_dir(path)
    raw = io.read_config(path)
    if io.is_tformer_config(raw):
        model = build(io.tformer_config(raw, path), init=False)
        io.load_weights(model, io.read_weights(path), source=str(path / io.WEIGHTS_NAME))
    elif hf.is_hf_config(raw):
        model = _load_hf(path, raw)
    else:
        raise _not_a_model_config(path)
    defaults = read_generation_config(path)
    if defaults is not None:
        model.generation_config = defaults
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)
    if attn_impl is not None:
        model.set_attn_impl(attn_impl)
    return model.eval()


def save_pretrained(
    model: TransformerModel, path: str | Path, format: str = "tformer", **options: Any
) -> None:
    """Write ``model`` into directory ``path`` in ``format``.

    ``"tformer"``: config.json and model.safetensors, each atomically (and generation_config.json when the
    model has generation defaults; ``tokenizer=`` saves its files too). ``"hf"``: a directory that
    ``transformers`` loads (:func:`tformer.interop.export.save_hf`: ``tokenizer=``, ``overwrite=``,
    ``architecture=``).
    """
    if format == "hf":
        export.save_hf(model, path, **options)
    else:
        model.save_pretrained(path, format=format, **options)
