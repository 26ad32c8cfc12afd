"""Vision Transformer: patch embedding, the pre-LN encoder blocks every family uses, a classification head.

The encoder is bidirectional self-attention with no mask: every image has the same number of patches.
"""

from __future__ import annotations

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.components import make_block, norm_factory
from tformer.models.encoder import Pooler
from tformer.models.outputs import ModelOutput
from tformer.nn.patch_embedding import PatchEmbedding
from tformer.nn.stack import TransformerStack


class ViTModel(TransformerModel):
    """Image classifier (``config.head="classification"``: logits (B, num_labels) from the [CLS] state after
    the final norm) or image encoder (``head="none"``: hidden states, and ``pooler_output`` with a pooler)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.embed = PatchEmbedding(
            config.image_size, config.patch_size, config.num_channels, config.d_model, config.dropout
        )
        self.layers = nn.ModuleList([make_block(config) for _ in range(config.n_layers)])
        self.norm = norm_factory(config)() if config.final_norm else None
        self.pooler = Pooler(config.d_model) if config.pooler else None
        self.head = nn.Linear(config.d_model, config.num_labels) if config.head == "classification" else None

    def decoder_stack(self) -> TransformerStack:
        """A vision transformer has no decoder: a clear error."""
        raise ValueError("a vision transformer does not generate; it classifies or encodes images")

    def forward(self, pixel_values: torch.Tensor, output_attentions: bool = False) -> ModelOutput:
        """pixel_values (B, C, H, W) -> logits (B, num_labels) and last_hidden_state (B, 1 + N, d_model)."""
        x = self.embed(pixel_values)
        attentions = []
        for block in self.layers:
            x, (weights, _) = block(x, need_weights=output_attentions)
            attentions.append(weights)
        if self.norm is not None:
            x = self.norm(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        logits = self.head(x[:, 0]) if self.head is not None else None
        return ModelOutput(
            logits=logits,
            last_hidden_state=x,
            pooler_output=pooled,
            attentions=tuple(attentions) if output_attentions else None,
        )
