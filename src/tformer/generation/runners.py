"""How generation drives each family: a prefill, one cached step, or a full uncached pass.

A runner hides whether the model is decoder-only (prompt in the decoder, left padding handled with the
attention mask and ``position_ids = cumsum(mask) - 1`` as Hugging Face does) or encoder-decoder (the
source encoded once; the decoder attends to that memory). Every method returns next-token logits (B, V)
for the last position, through the model's one door (``forward``, or ``decode`` for encoder-decoders) with
``logits_to_keep=1``. Shapes: B rows (batch x beams), L total length (prompt + new tokens).
"""

from __future__ import annotations

import torch

from tformer.generation.config import GenerationError
from tformer.generation.protocols import CausalLM, LogitsOutput, Seq2SeqLM


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Hugging Face's generation positions: cumsum(mask) - 1, padding at 0. (B, L) -> (B, L).

    Example: mask [[0, 0, 1, 1, 1]] -> [[0, 0, 0, 1, 2]].
    """
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def last_logits(out: LogitsOutput) -> torch.Tensor:
    """Next-token logits (B, V) from a forward pass that kept the last position: (B, 1, V) -> (B, V)."""
    if out.logits is None:
        raise GenerationError("the model returned no logits; generation needs a language-model head")
    return out.logits[:, -1]


class DecoderRunner:
    """Drives a decoder-only LM over rows whose prompt (left padded) fills the first T columns.

    Args:
        model: a ``CausalLM``. prompt_mask: (B, T) 1 for tokens, 0 for padding. total_len: L.
    """

    def __init__(self, model: CausalLM, prompt_mask: torch.Tensor, total_len: int) -> None:
        B, T = prompt_mask.shape
        mask = torch.ones(B, total_len, dtype=torch.long, device=prompt_mask.device)
        mask[:, :T] = prompt_mask
        self.model = model
        self.position_ids = positions_from_mask(mask)  # (B, L)
        # without padding the mask is all ones and the model's faster unmasked path applies
        self.mask = None if bool(prompt_mask.all()) else mask
        self.slots = torch.arange(total_len, device=prompt_mask.device)

    def _mask(self, end: int) -> torch.Tensor | None:
        return None if self.mask is None else self.mask[:, :end]

    def _last_logits(self, tokens: torch.Tensor, start: int, input_pos: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, V) after tokens (B, t) placed at columns start .. start + t - 1."""
        end = start + tokens.shape[1]
        out = self.model(
            tokens, self._mask(end), self.position_ids[:, start:end], input_pos, logits_to_keep=1
        )
        return last_logits(out)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the prompt (B, T) through the cached model; the LM head only on the last position."""
        return self._last_logits(tokens, 0, self.slots[: tokens.shape[1]])

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """One cached step: token (B, 1) at absolute position ``pos``."""
        return self._last_logits(token, pos, self.slots[pos : pos + 1])

    def full(self, tokens: torch.Tensor) -> torch.Tensor:
        """Uncached reference pass over all tokens so far (B, t)."""
        return self._last_logits(tokens, 0, None)


class Seq2SeqRunner:
    """Drives an encoder-decoder LM: the source is encoded once, the decoder generates.

    Args:
        model: a ``Seq2SeqLM``. memory: (B, S, d_model) encoder output. memory_mask: (B, S) or None.
    """

    def __init__(
        self, model: Seq2SeqLM, memory: torch.Tensor, memory_mask: torch.Tensor | None, total_len: int
    ) -> None:
        self.model, self.memory = model, memory
        self.memory_mask = None if memory_mask is None or bool(memory_mask.all()) else memory_mask
        self.slots = torch.arange(total_len, device=memory.device)

    def _last_logits(self, tokens: torch.Tensor, input_pos: torch.Tensor | None) -> torch.Tensor:
        out = self.model.decode(tokens, self.memory, self.memory_mask, input_pos=input_pos, logits_to_keep=1)
        return last_logits(out)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decoder prompt (B, T) with the cache."""
        return self._last_logits(tokens, self.slots[: tokens.shape[1]])

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """One cached step: token (B, 1) at position ``pos``."""
        return self._last_logits(token, self.slots[pos : pos + 1])

    def full(self, tokens: torch.Tensor) -> torch.Tensor:
        """Uncached reference pass over the decoder tokens so far (B, t)."""
        return self._last_logits(tokens, None)


Runner = DecoderRunner | Seq2SeqRunner
