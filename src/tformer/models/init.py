"""Weight initialisation as each family's paper or reference implementation does it, and the derived
buffers of a model built on the meta device."""

from __future__ import annotations

import math

import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.nn.attention import Attention
from tformer.nn.feedforward import FeedForward, GatedFeedForward
from tformer.nn.positions import T5RelativeBias


def _normal_init(model: nn.Module, cfg: ModelConfig) -> None:
    """N(0, 0.02) for matrices and embeddings, zero biases (GPT-2, BERT, BART, Llama)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=cfg.init_std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    if cfg.arch == "decoder":
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layers) so the residual stream's variance
        # does not grow with depth
        std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        for m in model.modules():
            if isinstance(m, Attention):
                nn.init.normal_(m.o_proj.weight, std=std)
            elif isinstance(m, (FeedForward, GatedFeedForward)):
                nn.init.normal_(m.down.weight, std=std)


def _xavier_init(model: nn.Module, cfg: ModelConfig) -> None:
    """Glorot-uniform matrices (the Annotated Transformer); embeddings N(0, d^-0.5) since they are scaled
    by sqrt(d_model) on input."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=cfg.d_model**-0.5)


def _t5_init(model: nn.Module, cfg: ModelConfig) -> None:
    """Mesh-TensorFlow's scheme: std depends on fan-in, since T5 does not scale attention scores."""
    d, h, dk, dff = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0)
        if isinstance(m, Attention):
            q_dim = h * dk
            w = m.q_proj.weight if m.cross else m.qkv_proj.weight
            with torch.no_grad():
                nn.init.normal_(w, std=d**-0.5)  # k and v
                if m.cross:
                    nn.init.normal_(m.kv_proj.weight, std=d**-0.5)
                w[:q_dim].normal_(std=(d * dk) ** -0.5)  # q
            nn.init.normal_(m.o_proj.weight, std=q_dim**-0.5)
        elif isinstance(m, (FeedForward, GatedFeedForward)):
            for lin in (m.up, getattr(m, "gate", None)):
                if lin is not None:
                    nn.init.normal_(lin.weight, std=d**-0.5)
            nn.init.normal_(m.down.weight, std=dff**-0.5)
    for m in model.modules():  # after the generic embedding init above, which also visits these
        if isinstance(m, T5RelativeBias):
            nn.init.normal_(m.embedding.weight, std=d**-0.5)
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None and not cfg.tie_word_embeddings:
        nn.init.normal_(lm_head.weight, std=1.0)


def init_weights(model: nn.Module, cfg: ModelConfig) -> None:
    """Initialise ``model`` in place with the scheme named by ``cfg.init``; norms start at identity."""
    {"normal": _normal_init, "xavier": _xavier_init, "t5": _t5_init}[cfg.init](model, cfg)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def reset_buffers(model: nn.Module, device: torch.device | str | None = None) -> None:
    """Recompute the derived buffers (RoPE frequencies, sinusoid tables, ALiBi slopes) on ``device``.

    They are not stored in checkpoints, so a model built on the meta device gets them here; every module
    with such buffers defines ``reset_buffers()``.
    """
    with torch.device(device or "cpu"):
        for m in model.modules():
            reset = getattr(m, "reset_buffers", None)
            if callable(reset):
                reset()
