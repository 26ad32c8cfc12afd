"""``--set key=value`` overrides, typed against the fields of ``ModelConfig`` and ``TrainConfig``."""

from __future__ import annotations

import json
import types
from dataclasses import fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from tformer.config import ModelConfig
from tformer.errors import ConfigError
from tformer.training.config import TrainConfig

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def parse_value(hint: Any, text: str, key: str = "value") -> Any:
    """Convert command-line ``text`` to the type ``hint`` of a dataclass field.

    Example: ``parse_value(int | None, "none") -> None``; ``parse_value(tuple[float, float], "0.9,0.95")
    -> (0.9, 0.95)``; ``parse_value(bool, "yes") -> True``.
    """
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(arg, text, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse {text!r}")
    if origin is Literal:
        if text in args:
            return text
        raise ConfigError(f"{key}={text!r} is not valid; choose one of {', '.join(map(str, args))}")
    if hint is bool:
        low = text.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ConfigError(f"{key} expects true or false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(
                f"{key} expects {'an integer' if hint is int else 'a number'}, got {text!r}"
            ) from None
    if hint is str:
        return text
    if origin is tuple:
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        if len(parts) != len(args):
            raise ConfigError(f"{key} expects {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(a, p.strip(), key) for a, p in zip(args, parts))
    if origin is dict or hint is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} expects a JSON object, got {text!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key} expects a JSON object, got {text!r}")
        return value
    raise ConfigError(f"{key} cannot be set from the command line")


def split_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse ``["key=value", ...]`` into (ModelConfig changes, TrainConfig changes).

    Raises:
        ConfigError: a malformed pair, an unknown key (the message lists the valid keys), or a value
            of the wrong type.
    """
    model_hints, train_hints = get_type_hints(ModelConfig), get_type_hints(TrainConfig)
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    model_changes: dict[str, Any] = {}
    train_changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        if key in train_keys:
            train_changes[key] = parse_value(train_hints[key], text, key)
        elif key in model_keys:
            model_changes[key] = parse_value(model_hints[key], text, key)
        else:
            raise ConfigError(
                f"unknown --set key {key!r}; valid keys: training: {', '.join(sorted(train_keys))}; "
                f"model: {', '.join(sorted(model_keys))}"
            )
    return model_changes, train_changes
