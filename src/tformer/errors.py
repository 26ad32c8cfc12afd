"""Error types. Every user mistake surfaces as one of these with a one-line message saying what to do."""

from __future__ import annotations


class TformerError(Exception):
    """Base class for errors caused by user input (config, files, arguments)."""


class ConfigError(TformerError, ValueError):
    """An invalid configuration value or an unknown preset/architecture."""


class CheckpointError(TformerError, ValueError):
    """Missing, unexpected, mismatched or unsafe weights in a checkpoint directory."""


class DataError(TformerError, ValueError):
    """Empty, missing, or undecodable input data."""


class InputError(TformerError, ValueError):
    """Model inputs the model cannot represent: token ids outside its vocabulary, positions past its context."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
