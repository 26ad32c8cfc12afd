"""Autoregressive generation: greedy, sampling (temperature / top-k / top-p), beam search, streaming.

    out = model.generate(input_ids, attention_mask, max_new_tokens=32, do_sample=True, top_p=0.9, seed=0)
    for new_tokens in stream_generate(model, input_ids, max_new_tokens=32):  # (B,) per step
        ...

Options and return values follow Hugging Face's ``generate``; see ``tformer.generation.api.generate``.
``with native_kernels(model): ...`` runs batch-1 decoding through native CPU kernels (``tformer.kernels``).
"""

from tformer.generation.api import GenerateOutput, TokenStream, generate, stream_generate
from tformer.generation.config import GenerationConfig, GenerationError
from tformer.generation.streaming import TextStreamer, stream_text
from tformer.kernels import native_kernels  # the native CPU kernels are a backend of the nn layers

__all__ = [
    "GenerateOutput",
    "GenerationConfig",
    "GenerationError",
    "TextStreamer",
    "TokenStream",
    "generate",
    "native_kernels",
    "stream_generate",
    "stream_text",
]
