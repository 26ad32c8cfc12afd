"""Generation settings: one validated dataclass, with Hugging Face's names and meanings.

Special tokens default from the model config as Hugging Face's ``generate`` does: ``pad_token_id`` falls
back to the first EOS id; encoder-decoder models start decoding from ``decoder_start_token_id`` (or BOS).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from tformer.config import ModelConfig
from tformer.errors import TformerError

EarlyStopping = bool | Literal["never"]


class GenerationError(TformerError, ValueError):
    """Invalid generation settings or inputs (a one-line message saying what to change)."""


@dataclass
class GenerationConfig:
    """Decoding options of ``generate``; see its docstring for each field's meaning."""

    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None  # None: no top-k filter (Hugging Face would default to 50; pass it explicitly)
    top_p: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: EarlyStopping = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    stop_strings: str | list[str] | None = None
    seed: int | None = None
    use_cache: bool = True
    output_logits: bool = False  # keep each step's raw next-token logits (GenerateOutput.logits)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> GenerationConfig:
        """Build from ``generate``'s keyword arguments, naming any unknown one."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise GenerationError(
                f"unknown generation option {unknown[0]!r}; valid options: {', '.join(sorted(valid))}"
            )
        return cls(**kwargs)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise GenerationError for settings Hugging Face would reject or silently misuse."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise GenerationError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if not isinstance(self.num_return_sequences, int) or self.num_return_sequences < 1:
            raise GenerationError(f"num_return_sequences must be >= 1, got {self.num_return_sequences!r}")
        if self.num_return_sequences > self.num_beams and not self.do_sample:
            raise GenerationError(
                f"num_return_sequences={self.num_return_sequences} needs num_beams >= {self.num_return_sequences} "
                "(or do_sample=True)"
            )
        if self.do_sample:
            if not self.temperature > 0:
                raise GenerationError(
                    f"temperature must be > 0 when sampling, got {self.temperature}; use do_sample=False for greedy"
                )
            if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
                raise GenerationError(
                    f"top_k must be an integer >= 1 (or None for no top-k), got {self.top_k!r}"
                )
            if self.top_p is not None and not 0 < self.top_p <= 1:
                raise GenerationError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise GenerationError(
                f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}"
            )
        if self.early_stopping not in (True, False, "never"):
            raise GenerationError(
                f"early_stopping must be True, False or 'never', got {self.early_stopping!r}"
            )

    @property
    def eos_ids(self) -> list[int]:
        """``eos_token_id`` as a list (empty when unset)."""
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def stop_string_list(self) -> list[str]:
        """``stop_strings`` as a list (empty when unset)."""
        if not self.stop_strings:
            return []
        return [self.stop_strings] if isinstance(self.stop_strings, str) else list(self.stop_strings)

    def resolve_special_tokens(self, model_config: ModelConfig, encoder_decoder: bool) -> None:
        """Fill unset special tokens from the model config, as Hugging Face's generate does."""
        if self.eos_token_id is None:
            self.eos_token_id = model_config.eos_token_id
        if self.pad_token_id is None:
            self.pad_token_id = model_config.pad_token_id
        if self.pad_token_id is None and self.eos_ids:
            self.pad_token_id = self.eos_ids[0]
        if encoder_decoder:
            if self.decoder_start_token_id is None:
                self.decoder_start_token_id = model_config.decoder_start_token_id
            if self.decoder_start_token_id is None:
                self.decoder_start_token_id = model_config.bos_token_id
            if self.decoder_start_token_id is None:
                raise GenerationError(
                    "the model config sets neither decoder_start_token_id nor bos_token_id; "
                    "pass decoder_start_token_id to generate"
                )
