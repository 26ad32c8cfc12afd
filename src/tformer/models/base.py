"""What every tformer model shares: its config, caches, attention backend switch, save and generate.

Loading, saving and generation live in their own modules; the methods here only delegate to them so
that users' Hugging Face habits (``model.save_pretrained``, ``model.generate``) carry over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

import tformer.generation as generation
from tformer.config import ModelConfig
from tformer.models.formats import save_format
from tformer.nn.attention import ATTN_IMPLS, Attention
from tformer.nn.kv_cache import KVCache, RollingKVCache, StaticKV
from tformer.nn.stack import TransformerStack


class TransformerModel(nn.Module):
    """Base class of the three families."""

    config: ModelConfig
    #: defaults of ``generate`` (Hugging Face's generation_config.json), under the caller's options
    generation_config: generation.GenerationConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation.GenerationConfig()

    # --- structure -------------------------------------------------------------------------------
    def stacks(self) -> list[TransformerStack]:
        """Every stack of blocks (one for decoder-only and encoder models, two for encoder-decoders)."""
        return [m for m in self.modules() if isinstance(m, TransformerStack)]

    def decoder_stack(self) -> TransformerStack:
        """The stack that generates tokens (the decoder); caches live here."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the weights."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights."""
        return next(self.parameters()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Unique parameters (tied weights counted once)."""
        seen: set[int] = set()
        total = 0
        for name, p in self.named_parameters():
            if id(p) in seen or (exclude_embeddings and "embed" in name):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    def set_attn_impl(self, impl: str) -> TransformerModel:
        """Switch every attention layer to ``"sdpa"`` (fused) or ``"reference"`` (readable, weights)."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f"unknown attention backend {impl!r}; choose one of {', '.join(ATTN_IMPLS)}")
        for m in self.modules():
            if isinstance(m, Attention):
                m.impl = impl
        self.config.attn_impl = impl
        return self

    def set_gradient_checkpointing(self, enabled: bool = True) -> TransformerModel:
        """Recompute each block's activations in the backward pass (less memory, more compute)."""
        for stack in self.stacks():
            stack.gradient_checkpointing = enabled
        return self

    # --- caches ----------------------------------------------------------------------------------
    def setup_caches(
        self,
        batch_size: int,
        max_seq_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        window_slack: int = 0,
    ) -> None:
        """Preallocate the decoder's key/value caches for ``batch_size`` sequences of ``max_seq_len`` tokens.

        Sliding-window models get ring buffers of the window size, plus ``window_slack`` slots so that
        speculative decoding can write that many tokens beyond what it keeps (see ``rewind_caches``); an
        attention kind with its own decoding state (Performer) gets that instead. Cross-attention gets a
        slot for keys/values computed once from the encoder output.
        """
        cfg = self.config
        max_seq_len = max_seq_len or cfg.max_seq_len
        if cfg.position in ("learned", "sinusoidal") and max_seq_len > cfg.max_seq_len:
            raise ValueError(
                f"max_seq_len={max_seq_len} exceeds the model's context of {cfg.max_seq_len} tokens"
            )
        dtype, device = dtype or self.dtype, device or self.device
        window = cfg.sliding_window
        for block in self.decoder_stack().layers:
            make_state = getattr(block.attn.kind, "make_cache", None)  # e.g. Performer's constant-size state
            if make_state is not None:
                block.attn.cache = make_state(batch_size, dtype, device)
            elif window is not None and window + window_slack < max_seq_len:
                block.attn.cache = RollingKVCache(
                    batch_size, cfg.n_kv_heads, window + window_slack, cfg.head_dim, dtype, device
                )
            else:
                block.attn.cache = KVCache(
                    batch_size, cfg.n_kv_heads, max_seq_len, cfg.head_dim, dtype, device
                )
            if block.cross_attn is not None:
                block.cross_attn.cache = StaticKV()

    def reorder_caches(self, index: torch.Tensor) -> None:
        """Beam search: row i of every cache becomes old row ``index[i]`` (index (B,) of rows)."""
        for m in self.modules():
            if isinstance(m, (KVCache, StaticKV)):
                m.reorder(index)

    def rewind_caches(self, end: int, shift: torch.Tensor | None = None) -> None:
        """Speculative decoding: keep positions < ``end``, moving row b's entries by ``shift[b]`` positions.

        Raises:
            GenerationError: a cache that cannot be rewound (a recurrent state rather than keys/values).
        """
        for block in self.decoder_stack().layers:
            cache = block.attn.cache
            if not isinstance(cache, KVCache) or not getattr(cache, "rewindable", True):
                raise generation.GenerationError(
                    f"speculative decoding is not supported with {type(cache).__name__} caches: "
                    "it needs key/value caches that can drop rejected tokens"
                )
            cache.rewind(end, shift)

    def reset_caches(self) -> None:
        """Empty the caches (keep the buffers) before a new sequence."""
        for m in self.modules():
            if isinstance(m, (KVCache, StaticKV)):
                m.reset()

    def clear_caches(self) -> None:
        """Free the caches and return to uncached forward passes."""
        for block in self.decoder_stack().layers:
            block.attn.cache = None
            if block.cross_attn is not None:
                block.cross_attn.cache = None

    def cache_nbytes(self) -> int:
        """Bytes held by the key/value caches."""
        return sum(m.nbytes() for m in self.modules() if isinstance(m, KVCache))

    # --- delegation ------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, format: str = "tformer", **options: Any) -> None:
        """Write the model to directory ``path`` in ``format``: ``"tformer"`` (config.json with the ModelConfig
        and model.safetensors) or ``"hf"`` (a directory ``transformers`` loads; see
        ``tformer.interop.export.save_hf`` for its options, e.g. ``tokenizer=``, ``overwrite=``). The formats
        are a registry (``tformer.models.formats``) so that the Hugging Face one, above this layer, is reached
        without importing it."""
        save_format(format)(self, path, **options)

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor | generation.GenerateOutput:
        """Autoregressive generation; see ``tformer.generation.generate`` for the options."""
        return generation.generate(self, input_ids, **kwargs)
