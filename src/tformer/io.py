"""Plain file I/O: atomic writes, weight files, config.json, and a tformer model directory.

A tformer directory holds ``config.json`` (``"format": "tformer"`` and the ModelConfig) and
``model.safetensors``. Weights are read only through safetensors or ``torch.load(weights_only=True)``: pickled
code is never executed. Which format a directory holds, and building a model from it, is
``tformer.loading``'s job; this module knows no model class.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tformer._version import __version__
from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError

FORMAT = "tformer"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def atomic_write(path: str | Path, write, suffix: str = ".tmp") -> None:
    """Write a file via a temporary sibling and ``os.replace``, so readers never see a partial file.

    ``write`` is called with the temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with tied tensors kept once (under their first name), contiguous, detached."""
    seen: dict[tuple[int, int, tuple], str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = name
        out[name] = t.detach().contiguous()
    return out


def tied_aliases(model: torch.nn.Module) -> set[str]:
    """State-dict names that are aliases of an earlier tensor (tied weights)."""
    return set(model.state_dict()) - set(unique_state_dict(model))


def write_model_dir(path: str | Path, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Write a tformer directory: ``model.safetensors`` (``tensors``), then ``config.json``, each atomically.

    ``tensors`` must hold every storage once (see :func:`unique_state_dict`); safetensors refuses aliases.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tformer_version": __version__,
        "model": config.to_dict(),
    }
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file; a one-line CheckpointError naming it when it is empty,
    truncated or not safetensors at all (safetensors' own error is a bare ``SafetensorError``)."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the file is incomplete: copy or save it again")
    try:
        return load_file(path)
    except Exception as e:  # SafetensorError (truncated header or data), OSError
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({_first_line(e)}); it may be truncated: "
            "copy or save it again"
        ) from None


def read_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin``, read with ``weights_only=True``: a CheckpointError for pickled code
    (refused, never run) or for a file that is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses arbitrary objects
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain tensor file ({_first_line(e)})"
        ) from None
    except Exception as e:  # a truncated zip archive, an empty file, ...
        raise CheckpointError(
            f"{path} is not a readable PyTorch weights file ({_first_line(e)}); it may be truncated"
        ) from None


def shard_names(index: Path) -> list[str]:
    """The shard files a ``model.safetensors.index.json`` names, checked to be a valid index."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{index} is not valid JSON ({e})") from None
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f'{index} is not a sharded-weights index (no "weight_map" object)') from None
    for name in shards:
        if not isinstance(name, str) or not (index.parent / name).is_file():
            raise CheckpointError(f"{index} names shard {name!r}, which is not in {index.parent}")
    return shards


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory: model.safetensors, a sharded safetensors index, or pytorch_model.bin."""
    single, index, bin_file = (
        path / WEIGHTS_NAME,
        path / "model.safetensors.index.json",
        path / "pytorch_model.bin",
    )
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        out: dict[str, torch.Tensor] = {}
        for shard in shard_names(index):
            out.update(read_safetensors(path / shard))
        return out
    if bin_file.is_file():
        return read_torch_weights(bin_file)
    raise CheckpointError(
        f"no weights in {path}: expected {WEIGHTS_NAME}, model.safetensors.index.json or pytorch_model.bin"
    )


def load_weights(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy ``tensors`` into ``model``, refusing missing, unexpected or mis-shaped tensors by name."""
    expected = model.state_dict()
    aliases = tied_aliases(model)
    missing = sorted(set(expected) - set(tensors) - aliases)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} is missing weight {missing[0]!r}{more}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source} has unexpected weight {unexpected[0]!r}{more} that the model does not use"
        )
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"shape mismatch for {name!r}: {source} has {tuple(t.shape)}, the model expects "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)


def read_config(path: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (any format)."""
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_NAME}; is it a model directory?")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{cfg_path} is not a model config (a JSON {type(raw).__name__}, not an object)"
        )
    return raw


def is_tformer_config(raw: dict[str, Any]) -> bool:
    """Whether a parsed config.json was written by :func:`write_model_dir`."""
    return raw.get("format") == FORMAT


def tformer_config(raw: dict[str, Any], path: Path) -> ModelConfig:
    """The ModelConfig of a tformer config.json read from directory ``path``, refusing a newer format."""
    if raw.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer tformer (format {raw['format_version']}); upgrade"
        )
    if not isinstance(raw.get("model"), dict):
        raise CheckpointError(f'{path / CONFIG_NAME} has no "model" settings; save the model again')
    try:
        return ModelConfig.from_dict(raw["model"])
    except ConfigError as e:
        raise ConfigError(f"{path / CONFIG_NAME}: {e}") from None
