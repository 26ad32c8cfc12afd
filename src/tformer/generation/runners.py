"""How generation drives each family: a prefill, one cached step, or a full uncached pass.

A runner hides whether the model is decoder-only (prompt in the decoder, left padding handled with the
attention mask and ``position_ids = cumsum(mask) - 1`` as Hugging Face does) or encoder-decoder (the
source encoded once; the decoder attends to that memory). Every method returns next-token logits (B, V)
for the last position. Shapes: B rows (batch x beams), L total length (prompt + new tokens).
"""

from __future__ import annotations

import torch

from tformer.nn.kv_cache import KVCache, StaticKV


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Hugging Face's generation positions: cumsum(mask) - 1, padding at 0. (B, L) -> (B, L).

    Example: mask [[0, 0, 1, 1, 1]] -> [[0, 0, 0, 1, 2]].
    """
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


class DecoderRunner:
    """Drives a decoder-only LM over rows whose prompt (left padded) fills the first T columns.

    Args:
        model: a ``DecoderLM``. prompt_mask: (B, T) 1 for tokens, 0 for padding. total_len: L.
    """

    def __init__(self, model, prompt_mask: torch.Tensor, total_len: int) -> None:
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

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the prompt (B, T) through the cached model; the LM head only on the last position."""
        T = tokens.shape[1]
        model = self.model
        h, _ = model.body(tokens, self._mask(T), self.position_ids[:, :T], input_pos=self.slots[:T])
        return model.lm_head(h[:, -1])

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """One cached step: token (B, 1) at absolute position ``pos``."""
        out = self.model(
            token,
            self._mask(pos + 1),
            self.position_ids[:, pos : pos + 1],
            input_pos=self.slots[pos : pos + 1],
        )
        return out.logits[:, -1]

    def full(self, tokens: torch.Tensor) -> torch.Tensor:
        """Uncached reference pass over all tokens so far (B, t)."""
        t = tokens.shape[1]
        return self.model(tokens, self._mask(t), self.position_ids[:, :t]).logits[:, -1]


class Seq2SeqRunner:
    """Drives an encoder-decoder LM: the source is encoded once, the decoder generates.

    Args:
        model: an ``EncoderDecoderLM``. memory: (B, S, d_model) encoder output. memory_mask: (B, S) or None.
    """

    def __init__(self, model, memory: torch.Tensor, memory_mask: torch.Tensor | None, total_len: int) -> None:
        self.model, self.memory = model, memory
        self.memory_mask = None if memory_mask is None or bool(memory_mask.all()) else memory_mask
        self.slots = torch.arange(total_len, device=memory.device)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        out = self.model.decode(tokens, self.memory, self.memory_mask, input_pos=self.slots[:T])
        return out.logits[:, -1]

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        out = self.model.decode(token, self.memory, self.memory_mask, input_pos=self.slots[pos : pos + 1])
        return out.logits[:, -1]

    def full(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.decode(tokens, self.memory, self.memory_mask).logits[:, -1]


def reorder_caches(model: torch.nn.Module, index: torch.Tensor) -> None:
    """Beam search: row i of every cache becomes old row ``index[i]``."""
    for m in model.modules():
        if isinstance(m, (KVCache, StaticKV)):
            m.reorder(index)
