"""A stack of Transformer blocks: embeddings, masks and position signals computed once, blocks, final norm.

Used as the decoder-only body, the encoder, and the decoder of an encoder-decoder. Shapes: B batch,
T tokens in this call, S keys (T without cache; all cached positions with one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tformer.nn.attention_kinds.base import MaskSpec
from tformer.nn.attention_maps import MapSelection, check_weights_available
from tformer.nn.block import TransformerBlock
from tformer.nn.embedding import InputEmbedding
from tformer.nn.masks import build_attention_mask, padding_at, padding_mask_bias
from tformer.nn.moe import MoEFeedForward
from tformer.nn.positions import RotaryEmbedding

LayerWeights = tuple[torch.Tensor | None, torch.Tensor | None]


class StackOutput(NamedTuple):
    """What a stack's forward returns.

    hidden: (B, T, d_model) after the final norm.
    attentions: per-layer (self, cross) attention weights when asked, else None.
    router_logits: (B*T, E) router logits of each mixture-of-experts layer; empty without experts.
    """

    hidden: torch.Tensor
    attentions: list[LayerWeights] | None
    router_logits: tuple[torch.Tensor, ...]


class TransformerStack(nn.Module):
    """embed -> blocks -> final norm.

    Args:
        embed: the input embedding.
        layers: the blocks.
        final_norm: a norm after the last block, or None.
        causal: causal self-attention (decoders) or bidirectional (encoders).
        sliding_window: restrict self-attention to the last W keys.
        rotary: RoPE, applied to q and k in every layer.
        position_bias: a module mapping (q_pos (T,), k_pos (S,)) to an additive (1, H, T, S) bias
            (ALiBi, T5 relative buckets), computed once and shared by every layer.
    """

    def __init__(
        self,
        embed: InputEmbedding,
        layers: list[TransformerBlock],
        final_norm: nn.Module | None,
        *,
        causal: bool,
        sliding_window: int | None = None,
        rotary: RotaryEmbedding | None = None,
        position_bias: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(layers)
        self.norm = final_norm
        self.causal, self.sliding_window = causal, sliding_window
        self.rotary, self.position_bias = rotary, position_bias
        self.gradient_checkpointing = False

    def _map_selection(self, layers: Sequence[int] | None, heads: Sequence[int] | None) -> MapSelection:
        """The validated layers/heads to return maps for; fails early for an attention kind without them."""
        selection = MapSelection.resolve(
            layers,
            heads,
            n_layers=len(self.layers),
            n_heads=self.layers[0].attn.n_heads,
            where="decoder" if self.causal else "encoder",
        )
        for i in selection.layers:
            check_weights_available(self.layers[i].attn)
            if self.layers[i].cross_attn is not None:
                check_weights_available(self.layers[i].cross_attn)
        return selection

    @property
    def caching(self) -> bool:
        """Whether key/value caches are set up (then every call needs ``input_pos``)."""
        return self.layers[0].attn.cache is not None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attention_layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        global_attention_mask: torch.Tensor | None = None,
    ) -> StackOutput:
        """Run the stack on input_ids (B, T).

        Args:
            attention_mask: (B, L) 1 for real tokens, 0 for padding. Without a cache L = T; with one it covers
                every position so far (L > max(input_pos)), as in Hugging Face generation.
            position_ids: (B, T) positions for embeddings/RoPE; default ``input_pos``.
            input_pos: (T,) absolute positions of these tokens (cache slots); default 0..T-1.
            memory: (B, S_enc, d_model) encoder output for cross-attention; memory_mask (B, S_enc).
            output_attentions: return attention maps, for the layers in ``attention_layers`` and the heads
                in ``heads`` (default all; negative indices count from the end). The backend stays as set.
            global_attention_mask: (B, L) 1 for global tokens (attention_kind='local_global'), like
                attention_mask over every position so far.

        Returns:
            a ``StackOutput``: hidden states (B, T, d_model), per-layer (self, cross) attention weights
            (B, H|h, T, S) when asked ((None, None) for a layer not selected), and the router logits of every
            mixture-of-experts layer (for a load-balancing loss).
        """
        maps = self._map_selection(attention_layers, heads) if output_attentions else None
        B, T = input_ids.shape
        aligned = input_pos is None and not self.caching
        if input_pos is None:
            if self.caching:
                raise ValueError("a model with caches set up needs input_pos (the positions of these tokens)")
            input_pos = torch.arange(T, device=input_ids.device)
        if position_ids is None:
            position_ids = input_pos[None].expand(B, T)
        x = self.embed(input_ids, position_ids, token_type_ids)
        mask, is_causal = self._self_attention_mask(
            input_pos, attention_mask, global_attention_mask, x.dtype, aligned
        )
        layer_kwargs = dict(
            mask=mask,
            is_causal=is_causal,
            rope=self.rotary(position_ids, x.dtype) if self.rotary is not None else None,
            input_pos=input_pos,
            memory=memory,
            memory_mask=padding_mask_bias(memory_mask, x.dtype) if memory is not None else None,
        )
        x, attentions, router_logits = self._run_layers(x, layer_kwargs, maps, output_attentions)
        if self.norm is not None:
            x = self.norm(x)
        return StackOutput(x, attentions, router_logits)

    def _self_attention_mask(
        self,
        input_pos: torch.Tensor,
        attention_mask: torch.Tensor | None,
        global_attention_mask: torch.Tensor | None,
        dtype: torch.dtype,
        aligned: bool,
    ) -> tuple[torch.Tensor | MaskSpec | None, bool]:
        """The self-attention mask of queries at ``input_pos`` (T,) over every key they may see.

        Exact attention gets an additive (B|1, 1|H, T, S) mask (or None with ``is_causal``); an efficient
        attention kind gets the mask described (``MaskSpec``), never a dense (T, S) matrix.
        """
        cache = self.layers[0].attn.cache
        k_pos = cache.key_positions(input_pos) if self.caching else input_pos
        if self.layers[0].attn.kind is not None:
            return MaskSpec.build(input_pos, k_pos, attention_mask, global_attention_mask), self.causal
        if global_attention_mask is not None:
            raise ValueError(
                "global_attention_mask needs attention_kind='local_global' (it has global tokens)"
            )
        # one new token that sees every cached key needs no causal mask: with no padding/bias the attention
        # then runs unmasked (the fast path of every kernel)
        T = input_pos.numel()
        causal = self.causal and not (T == 1 and self.caching and cache.single_query_sees_all_keys)
        key_padding = None
        if attention_mask is not None and not bool(attention_mask.all()):
            key_padding = padding_at(attention_mask, k_pos)
        return build_attention_mask(
            input_pos,
            k_pos,
            causal=causal,
            dtype=dtype,
            sliding_window=self.sliding_window,
            key_padding=key_padding,
            bias=self.position_bias(input_pos, k_pos) if self.position_bias is not None else None,
            aligned=aligned,
        )

    def _run_layers(
        self, x: torch.Tensor, layer_kwargs: dict, maps: MapSelection | None, output_attentions: bool
    ) -> tuple[torch.Tensor, list[LayerWeights] | None, tuple[torch.Tensor, ...]]:
        """x (B, T, d_model) through every block; also each block's maps and MoE router logits."""
        attentions: list[LayerWeights] | None = [] if output_attentions else None
        router_logits: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            kwargs = dict(
                layer_kwargs,
                need_weights=maps is not None and i in maps.layers,
                weight_heads=maps.heads if maps is not None else None,
            )
            if self.gradient_checkpointing and self.training:
                x, weights = checkpoint(
                    lambda h, layer=layer, kw=kwargs: layer(h, **kw), x, use_reentrant=False
                )
            else:
                x, weights = layer(x, **kwargs)
            if attentions is not None:
                attentions.append(weights)
            ffn = layer.ffn
            if isinstance(ffn, MoEFeedForward) and ffn.router_logits is not None:  # the call just made
                router_logits.append(ffn.router_logits)
        return x, attentions, tuple(router_logits)
