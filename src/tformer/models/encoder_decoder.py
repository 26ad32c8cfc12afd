"""Encoder-decoder sequence-to-sequence LM (the 2017 Transformer, T5, BART): ``encode`` then ``decode``."""

from __future__ import annotations

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_stack
from tformer.models.outputs import ModelOutput, split_attentions
from tformer.nn.moe import moe_aux_loss
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
        return self.decoder

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor:
        """Source ids (B, S) -> memory (B, S, d_model)."""
        memory, _ = self.encoder(input_ids, attention_mask, output_attentions=output_attentions)
        return memory

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Target ids (B, T) attending to memory (B, S, d_model) -> logits (B, T, vocab).

        ``memory_mask`` (B, S) is the source attention mask; ``input_pos`` (T,) the cache positions.
        """
        h, attn = self.decoder(
            decoder_input_ids,
            decoder_attention_mask,
            input_pos=input_pos,
            memory=memory,
            memory_mask=memory_mask,
            output_attentions=output_attentions,
        )
        # T5 folds d_model**-0.5 into the tied projection's input
        scaled = h * self.config.d_model**-0.5 if self.config.scale_decoder_outputs else h
        attentions, cross = split_attentions(attn)
        return ModelOutput(
            logits=self.lm_head(scaled), last_hidden_state=h, attentions=attentions, cross_attentions=cross
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Teacher-forced pass: source (B, S) and decoder input (B, T) -> logits (B, T, vocab)."""
        if decoder_input_ids is None:
            raise ValueError(
                "decoder_input_ids is required (the target shifted right, starting with the start token)"
            )
        memory = encoder_outputs if encoder_outputs is not None else self.encode(input_ids, attention_mask)
        out = self.decode(
            decoder_input_ids,
            memory,
            attention_mask,
            decoder_attention_mask,
            output_attentions=output_attentions,
        )
        out.encoder_last_hidden_state = memory
        # the encoder's routers count only when this pass ran the encoder
        out.aux_loss = moe_aux_loss(self.decoder) if encoder_outputs is not None else moe_aux_loss(self)
        return out
