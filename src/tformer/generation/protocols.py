"""What generation needs from a model, as structural types: generation sits below ``tformer.models``.

Any object with these members can generate (tformer's ``DecoderLM`` and ``EncoderDecoderLM`` do), so this
package never imports the models that call it (as Hugging Face's ``GenerationMixin`` sits under its models).
Shapes: B rows, T tokens in this call, S source length, L = prompt + new tokens, V vocabulary.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from tformer.config import ModelConfig


class LogitsOutput(Protocol):
    """A forward pass's result: at least next-token ``logits`` (B, T, V)."""

    @property
    def logits(self) -> torch.Tensor | None:
        """(B, T, V) scores, or (B, k, V) with ``logits_to_keep=k``."""


class CachedModel(Protocol):
    """What both families share: a config, a device and preallocated key/value caches."""

    @property
    def config(self) -> ModelConfig:
        """Architecture, context length and special-token ids."""

    @property
    def device(self) -> torch.device:
        """Where the model's weights (and so its inputs) live."""

    def setup_caches(
        self,
        batch_size: int,
        max_seq_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        window_slack: int = 0,
    ) -> None:
        """Preallocate caches for ``batch_size`` rows of ``max_seq_len`` tokens (sliding-window ring buffers
        with ``window_slack`` extra slots)."""

    def reset_caches(self) -> None:
        """Empty the caches, keeping their buffers."""

    def clear_caches(self) -> None:
        """Free the caches (back to uncached forward passes)."""

    def reorder_caches(self, index: torch.Tensor) -> None:
        """Row i of every cache becomes old row ``index[i]`` (beam search)."""


@runtime_checkable
class CausalLM(CachedModel, Protocol):
    """A decoder-only LM: one ``forward`` for the prompt, each cached step and the uncached reference."""

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        *,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> LogitsOutput:
        """input_ids (B, T); attention_mask (B, L) over every position so far; position_ids (B, T);
        input_pos (T,) cache slots; logits_to_keep k: logits (B, k, V) of the last k positions."""


@runtime_checkable
class Seq2SeqLM(CachedModel, Protocol):
    """An encoder-decoder LM: ``encode`` the source once, then ``decode`` against its memory."""

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source (B, S) -> memory (B, S, d_model)."""

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        *,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> LogitsOutput:
        """Target (B, T) attending to memory (B, S, d_model); logits (B, k, V) with ``logits_to_keep=k``."""


GenerativeLM = CausalLM | Seq2SeqLM


@runtime_checkable
class SpeculativeLM(CausalLM, Protocol):
    """A decoder-only LM whose caches can drop rejected tokens: what speculative decoding needs."""

    def rewind_caches(self, end: int, shift: torch.Tensor | None = None) -> None:
        """Keep cache positions < ``end``; row b's entries move by ``shift[b]`` (B,) positions."""
