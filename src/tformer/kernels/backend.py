"""``native_kernels(model)``: run a model's one-token decoding steps through the native CPU kernels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from tformer.kernels.layers import to_native, to_reference
from tformer.kernels.loader import load


@contextmanager
def native_kernels(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Swap the model's linears, attentions and decoder layers for their kernel-backed subclasses
    (``tformer.kernels.layers``) for the duration of the block, and back on exit.

    Yields whether the kernels are active: False where they cannot be built here or ``enabled`` is
    False, and then the model is left as it is. Results match PyTorch's to float rounding (summation
    order differs), so greedy outputs can differ where two logits nearly tie. Modules that are already
    kernel-backed (a nested call) are left to the outer call.
    """
    ext = load() if enabled else None
    if ext is None:
        yield False
        return
    swapped: list[nn.Module] = []
    try:
        for module in list(model.modules()):  # listed first: the loop changes classes
            if to_native(module, ext):
                swapped.append(module)
        yield True
    finally:
        for module in reversed(swapped):
            to_reference(module)
