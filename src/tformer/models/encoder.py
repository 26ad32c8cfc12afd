"""Encoder-only models (BERT): a bidirectional stack plus an optional pooler and a task head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_stack, norm_factory
from tformer.models.outputs import ModelOutput, moe_aux_loss, split_attentions
from tformer.nn.feedforward import get_activation
from tformer.nn.stack import TransformerStack


class Pooler(nn.Module):
    """tanh(W h_0 + b): a sentence vector from the first ([CLS]) token."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, d)."""
        return torch.tanh(self.dense(h[:, 0]))


class MaskedLMHead(nn.Module):
    """Dense, activation and norm, then a projection to the vocabulary (tied to the input embedding)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.act = get_activation(cfg.activation)
        self.norm = norm_factory(cfg)()
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, vocab)."""
        return self.decoder(self.norm(self.act(self.dense(h))))


class EncoderModel(TransformerModel):
    """BERT-style encoder. ``config.head`` picks the output:

    - ``"none"``: ``last_hidden_state`` (and ``pooler_output`` with ``config.pooler``);
    - ``"mlm"``: masked-LM ``logits`` (B, T, vocab);
    - ``"classification"``: ``logits`` (B, num_labels) from the pooled first token;
    - ``"token_classification"``: ``logits`` (B, T, num_labels).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        tok = nn.Embedding(config.vocab_size, config.d_model)
        self.body = make_stack(config, tok, config.n_layers, causal=False)
        self.pooler = Pooler(config.d_model) if config.pooler else None
        self.head: nn.Module | None = None
        if config.head == "mlm":
            self.head = MaskedLMHead(config)
            if config.tie_word_embeddings:
                self.head.decoder.weight = tok.weight
        elif config.head in ("classification", "token_classification"):
            self.head = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(config.d_model, config.num_labels)
            )

    def decoder_stack(self) -> TransformerStack:
        """An encoder has none: a clear error."""
        raise ValueError("an encoder-only model does not generate; use a decoder or encoder-decoder model")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        attention_layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        global_attention_mask: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T), attention_mask (B, T), token_type_ids (B, T) segment ids; maps of the
        ``attention_layers`` / ``heads`` selection with ``output_attentions``; global_attention_mask (B, T)
        1 for global tokens (attention_kind='local_global', as Longformer)."""
        out = self.body(
            input_ids,
            attention_mask,
            position_ids,
            token_type_ids,
            output_attentions=output_attentions,
            attention_layers=attention_layers,
            heads=heads,
            global_attention_mask=global_attention_mask,
        )
        h = out.hidden
        pooled = self.pooler(h) if self.pooler is not None else None
        logits = None
        if self.config.head == "mlm":
            logits = self.head(h)
        elif self.config.head == "classification":
            logits = self.head(pooled if pooled is not None else h[:, 0])
        elif self.config.head == "token_classification":
            logits = self.head(h)
        attentions, _ = split_attentions(out.attentions)
        return ModelOutput(
            logits=logits,
            last_hidden_state=h,
            pooler_output=pooled,
            attentions=attentions,
            aux_loss=moe_aux_loss(out.router_logits, self.config.n_experts_per_token),
            router_logits=out.router_logits or None,
        )
