"""Kernel-backed subclasses of the nn layers, and the in-place swap between each and its base.

Each subclass computes the calls the native kernels cover and defers to its base class, the readable
reference, for every other one (several rows, masks, gradients, rolling caches, other dtypes):

- ``NativeLinear``: a single row through the native GEMV (decoding at batch 1);
- ``NativeAttention``: one unmasked query per head through ``attend_one``;
- ``NativeTransformerBlock``: a whole pre-norm layer for one token through ``decode_layer``.

``to_native`` swaps a module's class for its subclass in place, as ``torch.nn.utils.parametrize`` does:
the module keeps its identity, parameters (tied ones stay tied), buffers, caches and hooks, and
``state_dict`` keys do not change; ``type(module)`` and the model's repr show the swap. ``to_reference``
swaps it back.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tformer.kernels.loader import load
from tformer.nn.attention import Attention
from tformer.nn.block import TransformerBlock
from tformer.nn.feedforward import FeedForward, GatedFeedForward
from tformer.nn.kv_cache import KVCache
from tformer.nn.norms import RMSNorm

_DTYPES = (torch.float32, torch.bfloat16)
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")  # the feed-forward activations decode_layer computes
_WIDEN_ROWS = 16  # from this many rows on, a bf16 linear runs faster through fp32 (measured on AVX2)


def _kernels() -> Any:
    """The loaded extension (a kernel-backed module only exists once it loaded)."""
    ext = load()
    if ext is None:
        raise RuntimeError(
            "tformer's native kernels are not loaded; swap modules in with native_kernels(model)"
        )
    return ext


def _usable(*tensors: torch.Tensor) -> bool:
    """CPU tensors of a supported dtype, and no autograd recording (the kernels have no backward)."""
    return not torch.is_grad_enabled() and all(t.device.type == "cpu" and t.dtype in _DTYPES for t in tensors)


class NativeLinear(nn.Linear):
    """nn.Linear whose single-row calls run the native GEMV.

    Many bf16 rows (a prompt) go through fp32: without native bf16 instructions PyTorch's bf16 GEMM is
    several times slower than widening the weight and using the fp32 one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features), as nn.Linear."""
        w, b = self.weight, self.bias
        if x.dtype != w.dtype or not _usable(x, w):
            return super().forward(x)
        rows = x.numel() // x.shape[-1]
        if rows == 1:
            y = _kernels().linear_row(x.reshape(-1).contiguous(), w.contiguous(), b)  # (out_features,)
            return y.view(*x.shape[:-1], w.shape[0])
        if w.dtype == torch.bfloat16 and rows >= _WIDEN_ROWS:
            return F.linear(x.float(), w.float(), None if b is None else b.float()).to(w.dtype)
        return super().forward(x)


class NativeAttention(Attention):
    """Attention whose single unmasked query per head runs the native kernel (over the cache's view)."""

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        dropout_p: float,
    ) -> torch.Tensor:
        """As ``Attention.attend``: q (B, H, T, D), k/v (B, Hkv, S, D) -> (B, H, T, D)."""
        if (
            q.shape[2] == 1
            and mask is None
            and dropout_p == 0.0
            and q.dtype == k.dtype == v.dtype
            and _usable(q, k, v)
            and q.stride(3) == k.stride(3) == v.stride(3) == 1
        ):
            return _kernels().attend_one(q, k, v, self.scale)
        return super().attend(q, k, v, mask, is_causal, dropout_p)


def layer_fields(block: TransformerBlock) -> dict[str, Any] | None:
    """decode_layer's named fields for a block it computes exactly as ``TransformerBlock.forward`` does,
    or None: pre-norm self-attention with fused q/k/v, LayerNorm or RMSNorm (the same eps), a plain or
    gated feed-forward network with one of ``ACTIVATIONS``."""
    attn, ffn, norms = block.attn, block.ffn, (block.attn_norm, block.ffn_norm)
    if not block.pre_norm or block.cross_attn is not None or attn.cross:
        return None
    if all(type(n) is nn.LayerNorm and n.weight is not None and len(n.normalized_shape) == 1 for n in norms):
        norm = "layernorm"
    elif all(type(n) is RMSNorm for n in norms):
        norm = "rmsnorm"
    else:
        return None
    if type(ffn) not in (FeedForward, GatedFeedForward) or ffn.activation not in ACTIVATIONS:
        return None
    if norms[0].eps != norms[1].eps:
        return None
    gated = isinstance(ffn, GatedFeedForward)
    return dict(
        norm=norm,
        eps=float(norms[0].eps),
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads,
        head_dim=attn.head_dim,
        scale=float(attn.scale),
        activation=ffn.activation,
        attn_norm_weight=block.attn_norm.weight,
        attn_norm_bias=getattr(block.attn_norm, "bias", None),
        qkv_weight=attn.qkv_proj.weight,
        qkv_bias=attn.qkv_proj.bias,
        out_weight=attn.o_proj.weight,
        out_bias=attn.o_proj.bias,
        ffn_norm_weight=block.ffn_norm.weight,
        ffn_norm_bias=getattr(block.ffn_norm, "bias", None),
        gate_weight=ffn.gate.weight if gated else None,
        gate_bias=ffn.gate.bias if gated else None,
        up_weight=ffn.up.weight,
        up_bias=ffn.up.bias,
        down_weight=ffn.down.weight,
        down_bias=ffn.down.bias,
    )


class NativeTransformerBlock(TransformerBlock):
    """TransformerBlock whose one-token steps at batch 1 with a (non-rolling) KV cache run the whole layer
    in one native call.

    ``native_layer`` is the extension's ``DecoderLayer``: the block's weights by name (``layer_fields``),
    referenced, not copied, so in-place weight updates show; set by ``to_native``.
    """

    native_layer: Any

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        input_pos: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        weight_heads: tuple[int, ...] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """As ``TransformerBlock.forward``: x (B, T, d_model) -> (B, T, d_model), (self, cross) weights."""
        if mask is None and not is_causal and memory is None and not need_weights:
            out = self._decode_step(x, input_pos, rope)
            if out is not None:
                return out, (None, None)
        return super().forward(
            x,
            mask=mask,
            is_causal=is_causal,
            rope=rope,
            input_pos=input_pos,
            memory=memory,
            memory_mask=memory_mask,
            need_weights=need_weights,
            weight_heads=weight_heads,
        )

    def _decode_step(self, x: torch.Tensor, input_pos: torch.Tensor | None, rope) -> torch.Tensor | None:
        """The layer for one token at batch 1 with a KVCache, or None where the reference must run."""
        attn, cache = self.attn, self.attn.cache
        if type(cache) is not KVCache or input_pos is None or x.shape[:2] != (1, 1):
            return None
        if self.training or attn.impl != "sdpa" or cache.k.shape[0] != 1:
            return None
        if not (x.dtype == self.attn_norm.weight.dtype == cache.k.dtype) or not _usable(x, cache.k):
            return None
        cos = sin = None
        if rope is not None:
            cos, sin = rope[0].reshape(-1), rope[1].reshape(-1)  # (1, 1, D) -> (D,)
            if cos.dtype != x.dtype or cos.numel() != attn.head_dim:
                return None
        out = _kernels().decode_layer(
            self.native_layer,
            x.reshape(-1),  # (B=1, T=1, d) -> (d,)
            k_cache=cache.k,
            v_cache=cache.v,
            pos=int(input_pos),
            cos=cos,
            sin=sin,
        )
        return out.view(1, 1, -1)  # (d,) -> (B=1, T=1, d)


#: each reference class (exactly: subclasses have their own forward) and its kernel-backed subclass
NATIVE_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: NativeLinear,
    Attention: NativeAttention,
    TransformerBlock: NativeTransformerBlock,
}
_REFERENCE_CLASSES = {native: reference for reference, native in NATIVE_CLASSES.items()}


def to_native(module: nn.Module, ext: ModuleType) -> bool:
    """Swap ``module`` in place for its kernel-backed subclass; False (and no change) where none applies:
    another class, or a block ``decode_layer`` does not compute or whose weights it refuses."""
    native = NATIVE_CLASSES.get(type(module))
    if native is None:
        return False
    if native is NativeTransformerBlock:
        fields = layer_fields(module)
        if fields is None:
            return False
        try:
            layer = ext.DecoderLayer(**fields)
        except ValueError:  # e.g. non-contiguous or mixed-dtype weights: the reference runs
            return False
        module.native_layer = layer
    module.__class__ = native
    return True


def to_reference(module: nn.Module) -> None:
    """Undo ``to_native``: the module's class and attributes are as before."""
    module.__class__ = _REFERENCE_CLASSES[type(module)]
    vars(module).pop("native_layer", None)
