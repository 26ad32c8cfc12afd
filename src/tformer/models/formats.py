"""The formats a model directory can be written in: a registry from name to save function.

``TransformerModel.save_pretrained(path, format=...)`` looks the format up here, so that a format needing a
layer above ``tformer.models`` is reached without an upward import: that layer registers its format when it
is imported. ``"tformer"`` (config.json with the ModelConfig, model.safetensors, generation_config.json when
the model has generation defaults) is registered below. ``"hf"`` (Hugging Face's layout) is registered by
``tformer.interop.export``, which ``tformer.loading`` imports, so it is present whenever ``tformer`` is
imported; ``tformer.save_pretrained(model, path, format=...)`` in ``tformer.loading`` is the same door.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tformer.errors import ConfigError
from tformer.generation.hf_config import FILE_NAME as GENERATION_CONFIG_NAME
from tformer.io import atomic_write, unique_state_dict, write_model_dir

if TYPE_CHECKING:
    from tformer.models.base import TransformerModel

#: ``save(model, path, **options)``: writes the model to directory ``path``.
SaveFormat = Callable[..., None]

SAVE_FORMATS: dict[str, SaveFormat] = {}


def register_save_format(name: str, save: SaveFormat) -> None:
    """Make ``format=name`` available to ``save_pretrained`` (a later registration replaces an earlier one)."""
    SAVE_FORMATS[name] = save


def save_format(name: str) -> SaveFormat:
    """The save function of format ``name``, or a ConfigError listing the registered formats."""
    if name not in SAVE_FORMATS:
        raise ConfigError(f"unknown save format {name!r}; choose one of {', '.join(sorted(SAVE_FORMATS))}")
    return SAVE_FORMATS[name]


def save_tformer(model: TransformerModel, path: str | Path, *, tokenizer: Any = None) -> None:
    """tformer's own directory: config.json and model.safetensors (atomically), generation_config.json
    when the model has generation defaults, and the tokenizer's files when one is given."""
    path = Path(path)
    write_model_dir(path, model.config, unique_state_dict(model))
    defaults = model.generation_config.explicit()
    target = path / GENERATION_CONFIG_NAME
    if defaults:
        atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(defaults, indent=2) + "\n"))
    else:
        target.unlink(missing_ok=True)  # a stale file would give this model another's defaults
    if tokenizer is not None:
        tokenizer.save(path)


register_save_format("tformer", save_tformer)
