"""Native CPU kernels for batch-1 decoding: a backend of the nn layers.

Decoding one token reads every weight once with a single input row. PyTorch routes such a row through
GEMM code that runs well below the memory bandwidth (for bfloat16 on CPUs without native bf16
instructions, AVX2, far below it), and each of the few dozen small operations of a layer costs
microseconds of dispatch. Small AVX2/FMA loops (``cpu/*.cpp``: fp32 accumulation, bf16 widened by a
shift) read the weights at the memory's speed, and ``decode_layer`` runs a whole pre-norm layer (norm,
q/k/v, RoPE, cache write, attention, output projection, norm, plain or gated feed-forward network) in one
call, rounding to the model's dtype where PyTorch does. ``TransformerBlock.forward`` stays the reference:
the tests compare the two at every decoding step.

With them on, bf16 linears over many rows (prefill) also run through fp32, which is several times faster
there. They are opt-in: ``with native_kernels(model): model.generate(...)`` swaps kernel-backed
subclasses (``layers.py``) into the model and back out. The first use compiles the sources with
``torch.utils.cpp_extension`` (``loader.py``: about a minute; cached afterwards). Anywhere they cannot
apply (no AVX2, no compiler, several rows, masks, gradients, rolling caches, post-norm layers, mixtures of
experts), the ordinary PyTorch path runs.
"""

from tformer.kernels.backend import native_kernels
from tformer.kernels.layers import (
    NativeAttention,
    NativeLinear,
    NativeTransformerBlock,
    layer_fields,
    to_native,
    to_reference,
)
from tformer.kernels.loader import ISAS, Isa, cpu_flags, load, select_isa

__all__ = [
    "ISAS",
    "Isa",
    "NativeAttention",
    "NativeLinear",
    "NativeTransformerBlock",
    "cpu_flags",
    "layer_fields",
    "load",
    "native_kernels",
    "select_isa",
    "to_native",
    "to_reference",
]
