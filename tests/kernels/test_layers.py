"""The kernel-backed layers: equal to the PyTorch layers at every decoding step, and stepping aside
wherever the kernels do not apply."""

from __future__ import annotations

import copy

import pytest
import torch

import tformer
from tests.generation.helpers import padded_batch
from tformer.kernels import native_kernels
from tformer.kernels.layers import NativeTransformerBlock, layer_fields, to_native, to_reference
from tformer.nn.block import TransformerBlock


def test_training_mode_falls_back_to_pytorch(families, ext):
    """With autograd recording, the kernels step aside (they have no backward)."""
    _, model = families["gpt2"]
    ids = torch.tensor([[5, 6, 7]])
    with native_kernels(model):
        logits = model(ids[:, :1]).logits
    assert logits.requires_grad
    logits.sum().backward()
    assert model.lm_head.weight.grad is not None
    model.zero_grad()


def test_bf16_prompt_runs_through_fp32_and_stays_close(families, ext):
    _, model = families["gpt2"]
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    ids = torch.randint(3, 90, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(ids).logits
        plain = bf16(ids).logits.float()
        with native_kernels(bf16):
            fast = bf16(ids).logits.float()
    scale = ref.abs().max()
    assert (fast - ref).abs().max() <= 0.05 * scale  # bf16 rounding, no more
    assert (fast - ref).abs().max() <= 2 * (plain - ref).abs().max() + 1e-3 * scale


#: decoder layers the fused one-token kernel computes: every norm, activation and attention layout it has
FUSED_VARIANTS = {
    "gpt2: LayerNorm, tanh-GELU, biases": ("gpt-tiny", {}),
    "llama: RMSNorm, SwiGLU, RoPE, GQA": ("llama-tiny", {}),
    "ReLU, no biases": (
        "gpt-tiny",
        dict(activation="relu", attn_bias=False, attn_out_bias=False, ffn_bias=False, norm_bias=False),
    ),
    "gated erf-GELU (GeGLU), MQA": ("llama-tiny", dict(activation="gelu", n_kv_heads=1)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant", FUSED_VARIANTS)
def test_fused_layer_step_matches_the_pytorch_layers(ext, fused_steps, variant, dtype):
    """Every cached step through the fused layer gives PyTorch's logits (fp32: to 1e-5; bf16: no further
    from the fp32 result than PyTorch's own bf16 run), so the cache it writes is right too."""
    preset, overrides = FUSED_VARIANTS[variant]
    torch.manual_seed(0)
    model = tformer.build(preset, **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():  # off unit norms and zero biases, so a swapped tensor shows
            p.add_(0.1 * torch.randn_like(p))
    low = copy.deepcopy(model).to(dtype)
    ids = torch.randint(3, 500, (1, 11), generator=torch.Generator().manual_seed(1))
    kw = dict(max_new_tokens=9, eos_token_id=[], output_logits=True, return_dict=True)
    with torch.inference_mode():
        exact = model.generate(ids, **kw)
        plain = low.generate(ids, **kw)
        with native_kernels(low):
            fast = low.generate(ids, **kw)
    assert fused_steps[0] == model.config.n_layers * 8  # every layer of every step after the prompt
    for got, base, ref in zip(fast.logits, plain.logits, exact.logits):
        scale = ref.abs().max()
        if dtype == torch.float32:
            assert (got - base).abs().max() <= 1e-5 * scale
        else:
            assert (got.float() - ref).abs().max() <= 2 * (base.float() - ref).abs().max() + 1e-3 * scale
    if dtype == torch.float32:
        assert torch.equal(fast.sequences, plain.sequences)


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("transformer-tiny", {}),  # post-LN
        ("mixtral-tiny", {}),  # a mixture of experts, not one feed-forward network
        ("gpt-tiny", dict(norm="rmsnorm", activation="silu")),  # any norm with any activation
    ],
)
def test_fused_layer_only_takes_layers_it_computes(preset, overrides):
    model = tformer.build(preset, **overrides)
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    supported = [layer_fields(b) is not None for b in blocks]
    expected = preset == "gpt-tiny"
    assert supported and all(s == expected for s in supported)


def test_fused_layer_steps_aside_for_batches_and_rolling_caches(families, ext, fused_steps):
    """Several rows, or Mistral's ring-buffer cache: the PyTorch layers run and the results are unchanged."""
    _, mistral = families["mistral"]
    ids, mask = padded_batch("mistral", [9, 6], seed=4)
    kw = dict(max_new_tokens=20, eos_token_id=[])  # past the window of 16
    plain_batch = mistral.generate(ids, attention_mask=mask, **kw)
    plain_one = mistral.generate(ids[:1], **kw)
    with native_kernels(mistral):
        assert torch.equal(mistral.generate(ids, attention_mask=mask, **kw), plain_batch)
        assert torch.equal(mistral.generate(ids[:1], **kw), plain_one)
    assert fused_steps[0] == 0


def test_a_block_whose_weights_the_kernel_refuses_keeps_the_reference(ext):
    """Weights decode_layer cannot read (here a transposed view) leave the block to PyTorch, unswapped."""
    model = tformer.build("gpt-tiny").eval()
    block = next(m for m in model.modules() if isinstance(m, TransformerBlock))
    up = block.ffn.up
    up.weight = torch.nn.Parameter(up.weight.detach().t().contiguous().t())  # same values, not contiguous
    assert not to_native(block, ext)
    assert type(block) is TransformerBlock and "native_layer" not in vars(block)
    other = next(m for m in model.modules() if isinstance(m, TransformerBlock) and m is not block)
    assert to_native(other, ext) and type(other) is NativeTransformerBlock
    to_reference(other)
    assert type(other) is TransformerBlock and "native_layer" not in vars(other)
