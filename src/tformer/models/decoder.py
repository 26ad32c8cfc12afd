"""Decoder-only causal language model (GPT-2, Llama, Mistral): embeddings, causal blocks, LM head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_stack
from tformer.models.outputs import ModelOutput, keep_positions, moe_aux_loss, split_attentions
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
        """The stack that generates tokens; caches live here."""
        return self.body

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        attention_layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        global_attention_mask: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) -> logits (B, T, vocab).

        Args:
            attention_mask: (B, T) 1 for tokens, 0 for padding (with a cache: (B, L) over all positions so far).
            position_ids: (B, T) positions (default: ``input_pos``, i.e. 0..T-1).
            input_pos: (T,) positions of these tokens in the cache (required when caches are set up).
            logits_to_keep: score only the last k positions (logits (B, k, vocab); 0 = all), or the positions
                of a 1-D index tensor; generation keeps 1 and skips the LM head over the rest of the prompt.
            output_attentions: attention maps of the ``attention_layers`` / ``heads`` selection (default all),
                computed beside the fused attention (see ``TransformerStack.forward``).
            global_attention_mask: (B, T) 1 for global tokens (attention_kind='local_global').
        """
        out = self.body(
            input_ids,
            attention_mask,
            position_ids,
            input_pos=input_pos,
            output_attentions=output_attentions,
            attention_layers=attention_layers,
            heads=heads,
            global_attention_mask=global_attention_mask,
        )
        h = keep_positions(out.hidden, logits_to_keep)  # (B, T, d_model) -> (B, k, d_model)
        attentions, _ = split_attentions(out.attentions)
        return ModelOutput(
            logits=self.lm_head(h),
            last_hidden_state=out.hidden if output_hidden_states else None,
            attentions=attentions,
            aux_loss=moe_aux_loss(out.router_logits, self.config.n_experts_per_token),
            router_logits=out.router_logits or None,
        )
