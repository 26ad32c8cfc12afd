"""Decoder-only causal language model (GPT-2, Llama, Mistral): embeddings, causal blocks, LM head."""

from __future__ import annotations

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_stack
from tformer.models.outputs import ModelOutput, split_attentions
from tformer.nn.stack import TransformerStack


class DecoderLM(TransformerModel):
    """p(x_t | x_<t) with a stack of causal self-attention blocks."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        tok = nn.Embedding(config.vocab_size, config.d_model, padding_idx=None)
        self.body = make_stack(config, tok, config.n_layers, causal=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_word_embeddings:
            self.lm_head.weight = tok.weight

    def decoder_stack(self) -> TransformerStack:
        return self.body

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        global_attention_mask: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) -> logits (B, T, vocab).

        Args:
            attention_mask: (B, T) 1 for tokens, 0 for padding (with a cache: (B, L) over all positions so far).
            position_ids: (B, T) positions (default: ``input_pos``, i.e. 0..T-1).
            input_pos: (T,) positions of these tokens in the cache (required when caches are set up).
            global_attention_mask: (B, T) 1 for global tokens (attention_kind='local_global').
        """
        h, attn = self.body(
            input_ids,
            attention_mask,
            position_ids,
            input_pos=input_pos,
            output_attentions=output_attentions,
            global_attention_mask=global_attention_mask,
        )
        attentions, _ = split_attentions(attn)
        return ModelOutput(
            logits=self.lm_head(h),
            last_hidden_state=h if output_hidden_states else None,
            attentions=attentions,
        )
