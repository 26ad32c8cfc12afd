"""Tiny Hugging Face models of the five families, and inputs for generation tests."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from tests.parity.helpers import hf_gpt2, hf_llama, hf_mistral

transformers = pytest.importorskip("transformers")

VOCAB = 96
PAD = {"gpt2": 0, "llama": 0, "mistral": 0, "t5": 0, "bart": 1}
ENCODER_DECODER = ("t5", "bart")
WINDOW = 4  # Mistral's sliding window: shorter than any prompt + output below


def t5(**overrides):
    """A tiny T5 v1.0; ``overrides`` change any T5Config field (e.g. v1.1's gated-gelu, untied head)."""
    cfg = dict(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**{**cfg, **overrides}))


def bart(**overrides):
    """A tiny BART without forced BOS/EOS; ``overrides`` change any BartConfig field."""
    cfg = dict(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
        forced_bos_token_id=None,
    )
    return transformers.BartForConditionalGeneration(transformers.BartConfig(**{**cfg, **overrides}))


FAMILIES = {
    "gpt2": partial(hf_gpt2, VOCAB),
    "llama": partial(hf_llama, VOCAB),
    "mistral": partial(hf_mistral, VOCAB, window=WINDOW),
    "t5": t5,
    "bart": bart,
}


def roughen(model: torch.nn.Module, std: float = 0.15, seed: int = 0) -> torch.nn.Module:
    """Add noise to every weight, and give encoder-decoders' LM head its own random matrix: tiny fresh
    models with a head tied to the input embedding otherwise repeat one token forever."""
    g = torch.Generator().manual_seed(seed)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if model.config.is_encoder_decoder and head.weight is embed.weight:
        head.weight = torch.nn.Parameter(torch.randn(embed.weight.shape, generator=g) * embed.weight.std())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
        base = getattr(model, "model", model)
        for stack in ("encoder", "decoder"):  # BART keeps per-stack copies of the shared embedding
            tokens = getattr(getattr(base, stack, None), "embed_tokens", None)
            if tokens is not None and hasattr(base, "shared"):
                tokens.weight.copy_(base.shared.weight)
    return model


def padded_batch(family: str, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, max(lengths)) padded as each family expects: left for decoders, right for encoders."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        if family in ENCODER_DECODER:
            mask[i, :n] = 1
        else:
            mask[i, T - n :] = 1
    return ids.masked_fill(mask == 0, PAD[family]), mask


def hf_generate(hf, ids, mask, family: str, **kwargs):
    """Hugging Face generate with the settings every comparison shares."""
    kwargs.setdefault("pad_token_id", PAD[family])
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, **kwargs)
