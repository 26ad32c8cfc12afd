"""Generation settings: one validated dataclass, with Hugging Face's names and meanings.

Special tokens default from the model config as Hugging Face's ``generate`` does: ``pad_token_id`` falls
back to the first EOS id; encoder-decoder models start decoding from ``decoder_start_token_id`` (or BOS).

Lengths follow Hugging Face too: ``max_length`` / ``min_length`` count the whole sequence (the prompt of a
decoder-only model, the decoder start token of an encoder-decoder), ``max_new_tokens`` / ``min_new_tokens``
only what is generated; :meth:`GenerationConfig.resolve_lengths` turns them into one consistent set once the
input length is known. A model's defaults (its ``generation_config.json``) apply under the caller's options:
:meth:`GenerationConfig.from_kwargs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from tformer.config import ModelConfig
from tformer.errors import TformerError

EarlyStopping = bool | Literal["never"]

#: Generated tokens when neither max_new_tokens nor max_length is given.
DEFAULT_MAX_NEW_TOKENS = 20
# pairs where the caller's one option replaces both of the model's defaults
_LENGTH_PAIRS = (("max_new_tokens", "max_length"), ("min_new_tokens", "min_length"))


class GenerationError(TformerError, ValueError):
    """Invalid generation settings or inputs (a one-line message saying what to change)."""


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_int(name: str, value: Any, minimum: int) -> None:
    if value is not None and not _is_int(value, minimum):
        raise GenerationError(f"{name} must be an integer >= {minimum} (or None), got {value!r}")


def _check_ids(name: str, value: Any) -> None:
    """None, one id, or a list of ids (non-negative integers)."""
    ids = [value] if _is_int(value, 0) else value
    if value is not None and (not isinstance(ids, (list, tuple)) or not all(_is_int(i, 0) for i in ids)):
        raise GenerationError(f"{name} must be a token id or a list of token ids, got {value!r}")


@dataclass
class GenerationConfig:
    """Decoding options of ``generate``; see its docstring for each field's meaning."""

    max_new_tokens: int | None = None  # None: from max_length, else DEFAULT_MAX_NEW_TOKENS
    max_length: int | None = None  # prompt (or decoder start) + new tokens
    min_new_tokens: int | None = None  # EOS is suppressed until this many tokens are generated
    min_length: int | None = None  # ... or until the sequence is this long
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None  # None: no top-k filter (Hugging Face would default to 50; pass it explicitly)
    top_p: float | None = None
    min_p: float | None = None  # keep tokens with probability >= min_p * the top probability
    typical_p: float | None = None  # locally typical sampling: the mass of tokens nearest the entropy
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: EarlyStopping = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int | None = None  # no n-gram of this size occurs twice
    bad_words_ids: list[list[int]] | None = None  # token sequences that may never be generated
    suppress_tokens: list[int] | None = None  # never generated
    begin_suppress_tokens: list[int] | None = None  # not generated as the first new token
    forced_bos_token_id: int | None = None  # the first token after the decoder start (BART)
    forced_eos_token_id: int | list[int] | None = None  # the last token when max_length is reached
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    stop_strings: str | list[str] | None = None
    seed: int | None = None
    use_cache: bool = True
    return_dict_in_generate: bool = False  # Hugging Face's name for generate(..., return_dict=True)
    output_scores: bool = False  # keep each step's processed scores (GenerateOutput.scores)
    output_logits: bool = False  # keep each step's raw next-token logits (GenerateOutput.logits)
    # decoder-only: past the context, condition each token on the last max_seq_len tokens (nanoGPT's crop)
    crop_context: bool = False
    # set by resolve_lengths: tokens before the first generated one (prompt, or the decoder start token)
    input_length: int | None = field(default=None, init=False, repr=False)
    # set by from_kwargs: a caller's explicit eos_token_id=None turns EOS off, as in Hugging Face
    eos_disabled: bool = field(default=False, init=False, repr=False)

    @classmethod
    def option_names(cls) -> list[str]:
        """The options ``generate`` accepts."""
        return [f.name for f in fields(cls) if f.init]

    @classmethod
    def from_kwargs(
        cls, kwargs: dict[str, Any], defaults: GenerationConfig | None = None
    ) -> GenerationConfig:
        """Build from ``generate``'s keyword arguments over a model's ``defaults``, naming any unknown option.

        As in Hugging Face, the caller's options win; a length limit given by the caller (``max_new_tokens``
        or ``max_length``, likewise the minimums) replaces both of the defaults, and within the defaults
        ``max_new_tokens`` wins over ``max_length``.
        """
        valid = cls.option_names()
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise GenerationError(
                f"unknown generation option {unknown[0]!r}; valid options: {', '.join(sorted(valid))}"
            )
        base = defaults.explicit() if defaults is not None else {}
        for new, total in _LENGTH_PAIRS:
            if kwargs.get(new) is not None and kwargs.get(total) is not None:
                raise GenerationError(f"pass {new} or {total}, not both ({new} counts only generated tokens)")
            if new in kwargs or total in kwargs:
                base.pop(new, None)
                base.pop(total, None)
            elif new in base:
                base.pop(total, None)
        config = cls(**{**base, **kwargs})
        config.eos_disabled = "eos_token_id" in kwargs and kwargs["eos_token_id"] is None
        return config

    def explicit(self) -> dict[str, Any]:
        """The options whose values differ from the defaults (what a generation_config.json would hold)."""
        default = GenerationConfig()
        return {
            name: getattr(self, name)
            for name in self.option_names()
            if getattr(self, name) != getattr(default, name)
        }

    def __post_init__(self) -> None:
        self.validate()
        self.warn_unused()

    def warn_unused(self) -> None:
        """Warn (as Hugging Face does) about sampling settings that greedy decoding or beam search ignore."""
        if self.do_sample:
            return
        unused = [
            f"{name}={value}"
            for name, value, default in (
                ("temperature", self.temperature, 1.0),
                ("top_k", self.top_k, None),
                ("top_p", self.top_p, None),
            )
            if value != default
        ]
        if unused:
            warnings.warn(
                f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} ignored: only sampling uses "
                f"{'it' if len(unused) == 1 else 'them'} (do_sample=True)",
                UserWarning,
                stacklevel=2,
            )

    def validate(self) -> None:
        """Raise GenerationError for settings Hugging Face would reject or silently misuse."""
        if self.max_new_tokens is not None and not _is_int(self.max_new_tokens, 1):
            raise GenerationError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.max_length is not None and not _is_int(self.max_length, 1):
            raise GenerationError(f"max_length must be a positive integer, got {self.max_length!r}")
        for name in ("min_new_tokens", "min_length", "no_repeat_ngram_size"):
            _check_int(name, getattr(self, name), 0)
        for low, high in (("min_new_tokens", "max_new_tokens"), ("min_length", "max_length")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise GenerationError(f"{low}={lo} is more than {high}={hi}; lower {low} or raise {high}")
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
            self._validate_sampling()
        if not self.repetition_penalty > 0:
            raise GenerationError(
                f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}"
            )
        if self.early_stopping not in (True, False, "never"):
            raise GenerationError(
                f"early_stopping must be True, False or 'never', got {self.early_stopping!r}"
            )
        self._validate_token_lists()

    def _validate_sampling(self) -> None:
        if not self.temperature > 0:
            raise GenerationError(
                f"temperature must be > 0 when sampling, got {self.temperature}; for greedy decoding: do_sample=False"
            )
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise GenerationError(f"top_k must be an integer >= 1 (or None for no top-k), got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise GenerationError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.typical_p is not None and not 0 < self.typical_p <= 1:
            raise GenerationError(f"typical_p must be in (0, 1], got {self.typical_p}")

    def _validate_token_lists(self) -> None:
        for name in ("suppress_tokens", "begin_suppress_tokens", "forced_eos_token_id"):
            _check_ids(name, getattr(self, name))
        if self.forced_bos_token_id is not None and not _is_int(self.forced_bos_token_id, 0):
            raise GenerationError(f"forced_bos_token_id must be a token id, got {self.forced_bos_token_id!r}")
        words = self.bad_words_ids
        if words is not None and (
            not isinstance(words, (list, tuple))
            or not words
            or not all(isinstance(w, (list, tuple)) and w and all(_is_int(i, 0) for i in w) for w in words)
        ):
            raise GenerationError(
                f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {words!r}"
            )

    def resolve_lengths(self, input_length: int) -> None:
        """Fix ``max_new_tokens``, ``max_length`` (total) and ``min_length`` (total) for an input of
        ``input_length`` tokens (the prompt, or 1 for an encoder-decoder's start token), as Hugging Face does.

        Raises:
            GenerationError: ``max_length`` leaves no room for a new token, or the minimum exceeds the maximum.
        """
        if self.max_new_tokens is None:
            if self.max_length is None:
                self.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
            elif self.max_length <= input_length:
                raise GenerationError(
                    f"max_length={self.max_length} leaves no room to generate: the input already has "
                    f"{input_length} tokens; raise max_length or pass max_new_tokens"
                )
            else:
                self.max_new_tokens = self.max_length - input_length
        self.max_length = input_length + self.max_new_tokens
        if self.min_new_tokens is not None:
            self.min_length = input_length + self.min_new_tokens
        if self.min_length is not None and self.min_length > self.max_length:
            raise GenerationError(
                f"min_length={self.min_length} is more than max_length={self.max_length} for this input; "
                "lower the minimum or raise the maximum"
            )
        self.input_length = input_length

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
        if self.eos_token_id is None and not self.eos_disabled:
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
