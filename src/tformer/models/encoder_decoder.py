"""Encoder-decoder sequence-to-sequence LM (the 2017 Transformer, T5, BART): ``encode`` then ``decode``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_stack
from tformer.models.outputs import ModelOutput, keep_positions, moe_aux_loss, split_attentions
from tformer.nn.stack import TransformerStack


class EncoderDecoderLM(TransformerModel):
    """Encoder over the source, causal decoder with cross-attention over the encoder output, LM head.

    The token embedding is shared by encoder, decoder and (when tied) the output projection.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = make_stack(config, self.shared, config.n_layers, causal=False)
        self.decoder = make_stack(config, self.shared, config.n_decoder_layers, causal=True, cross=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight

    def decoder_stack(self) -> TransformerStack:
        """The stack that generates tokens; caches live here."""
        return self.decoder

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor:
        """Source ids (B, S) -> memory (B, S, d_model)."""
        return self.encoder(input_ids, attention_mask, output_attentions=output_attentions).hidden

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        output_attentions: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        attention_layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> ModelOutput:
        """Target ids (B, T) attending to memory (B, S, d_model) -> logits (B, T, vocab).

        ``memory_mask`` (B, S) is the source attention mask; ``input_pos`` (T,) the cache positions;
        ``logits_to_keep`` scores only the last k positions (0 = all) or those of a 1-D index tensor.
        ``output_attentions`` returns self- and cross-attention maps of the ``attention_layers`` / ``heads``.
        """
        out = self.decoder(
            decoder_input_ids,
            decoder_attention_mask,
            input_pos=input_pos,
            memory=memory,
            memory_mask=memory_mask,
            output_attentions=output_attentions,
            attention_layers=attention_layers,
            heads=heads,
        )
        h = keep_positions(out.hidden, logits_to_keep)  # (B, T, d_model) -> (B, k, d_model)
        # T5 folds d_model**-0.5 into the tied projection's input
        scaled = h * self.config.d_model**-0.5 if self.config.scale_decoder_outputs else h
        attentions, cross = split_attentions(out.attentions)
        return ModelOutput(
            logits=self.lm_head(scaled),
            last_hidden_state=out.hidden,
            attentions=attentions,
            cross_attentions=cross,
            aux_loss=moe_aux_loss(out.router_logits, self.config.n_experts_per_token),
            router_logits=out.router_logits or None,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: torch.Tensor | None = None,
        output_attentions: bool = False,
        attention_layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> ModelOutput:
        """Teacher-forced pass: source (B, S) and decoder input (B, T) -> logits (B, T, vocab).

        ``output_attentions`` returns the encoder's, the decoder's and the cross-attention maps of the
        ``attention_layers`` / ``heads`` selection (the same indices in both stacks). With experts,
        ``aux_loss`` balances the routing of encoder and decoder together.
        """
        if decoder_input_ids is None:
            raise ValueError(
                "decoder_input_ids is required (the target shifted right, starting with the start token)"
            )
        maps = dict(output_attentions=output_attentions, attention_layers=attention_layers, heads=heads)
        encoder_attentions = None
        if encoder_outputs is None:
            encoded = self.encoder(input_ids, attention_mask, **maps)
            memory, encoder_routers = encoded.hidden, encoded.router_logits
            encoder_attentions, _ = split_attentions(encoded.attentions)
        else:
            memory, encoder_routers = encoder_outputs, ()
        out = self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask, **maps)
        if encoder_routers:
            out.router_logits = encoder_routers + (out.router_logits or ())
            out.aux_loss = moe_aux_loss(out.router_logits, self.config.n_experts_per_token)
        out.encoder_last_hidden_state = memory
        out.encoder_attentions = encoder_attentions
        return out
