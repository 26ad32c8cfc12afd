"""Shared machinery of the Hugging Face parity tests: build, save, load, compare."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

import tformer

ATOL_REL = 1e-5  # max abs difference relative to the output scale
IMPLS = ["sdpa", "reference"]  # tformer's attention backends, each compared with Hugging Face


@torch.no_grad()
def perturb(model: torch.nn.Module, std: float = 0.05) -> None:
    """Move every parameter (and BART's zero final_logits_bias buffer) off Hugging Face's init, whose zero
    biases and unit norms would hide a mis-mapped tensor."""
    for p in model.parameters():
        p.add_(torch.randn_like(p) * std)
    if hasattr(model, "final_logits_bias"):
        model.final_logits_bias.normal_()


def save_and_load(hf_model, directory: Path, attn_impl: str = "sdpa"):
    """Save an HF model with save_pretrained and load it back through tformer.from_pretrained."""
    hf_model.save_pretrained(directory)
    return tformer.from_pretrained(directory, attn_impl=attn_impl)


def load_families(makers: Mapping[str, Callable[[], torch.nn.Module]], tmp_path_factory) -> dict[str, tuple]:
    """Per name: the HF model ``make()`` builds (eval mode, perturbed), the directory it was saved to, and
    tformer's loads of that directory, one per attention backend in :data:`IMPLS`.

    For module-scoped fixtures: the models are built once, under seed 0.
    """
    torch.manual_seed(0)
    out = {}
    for name, make in makers.items():
        hf = make().eval()
        perturb(hf)
        d = tmp_path_factory.mktemp(name)
        out[name] = (hf, d, {impl: save_and_load(hf, d, impl) for impl in IMPLS})
    return out


def assert_close_scaled(
    ours: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None, rel: float = ATOL_REL
) -> None:
    """max |ours - ref| <= rel * max |ref| over the positions selected by ``mask`` (B, T)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if mask is not None:
        sel = mask.bool()
        ours, ref = ours[sel], ref[sel]
    scale = ref.abs().max().clamp(min=1.0)
    diff = (ours - ref).abs().max()
    assert diff <= rel * scale, f"max abs diff {diff:.3g} > {rel:g} * scale {scale:.3g}"


def right_padded_batch(vocab: int, lengths: list[int], pad_id: int, seed: int = 0):
    """input_ids (B, T) with random tokens and right padding, and the matching 1/0 attention mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = pad_id
    return ids, mask


# ---- tiny randomly initialised Hugging Face decoders (shared with the generation tests) ----------------
def hf_gpt2(vocab: int):
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg)


def hf_llama(vocab: int):
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg)


def hf_mistral(vocab: int, window: int):
    """Multi-query (one key/value head) with a sliding window of ``window`` tokens."""
    import transformers

    cfg = transformers.MistralConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=64,
        sliding_window=window,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return transformers.MistralForCausalLM(cfg)


def hf_mixtral(vocab: int, experts: int = 4):
    """Two layers of grouped-query attention and ``experts`` experts with top-2 routing."""
    import transformers

    cfg = transformers.MixtralConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=experts,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    return transformers.MixtralForCausalLM(cfg)
