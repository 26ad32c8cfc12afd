"""Optional native CPU kernels for batch-1 decoding: a bandwidth-bound GEMV and single-query attention.

Decoding one token reads every weight once with a single input row. PyTorch routes such a row through
GEMM code that, for bfloat16 on CPUs without native bf16 instructions (AVX2), runs far below the memory
bandwidth; its attention kernels pay similar fixed costs for one query. These two small AVX2/FMA loops
(fp32 accumulation, bf16 widened by a shift) read the weights at the memory's speed instead.

With them on, bf16 linears over many rows (prefill) also run through fp32, which is several times faster
there. They are opt-in: ``with native_kernels(model): model.generate(...)``. The first use compiles the C++
below with ``torch.utils.cpp_extension`` (about a minute; cached afterwards). Anywhere they cannot
apply (no AVX2, no compiler, several rows, masks, gradients), the ordinary PyTorch path runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tformer.nn.attention import Attention

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <cstring>
#include <vector>

// Shapes: O output features, I input features; B batch, H query heads, Hkv key/value heads, S keys, D head_dim.

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 values as fp32: bf16 is the top half of an fp32, so widening is a 16-bit shift
static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const at::BFloat16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// dot(row[0:n], x[0:n]) with x in fp32; four accumulators hide the FMA latency
template <typename T>
static inline float dot(const T* row, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(load8(row + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load8(row + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(load8(row + i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(load8(row + i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8(row + i), _mm256_loadu_ps(x + i), a0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) s += static_cast<float>(row[i]) * x[i];
  return s;
}

template <typename T>
static void linear_row_impl(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                            at::Tensor& y) {
  const int64_t O = w.size(0), I = w.size(1);
  std::vector<float> xf(I);
  const T* xp = x.data_ptr<T>();
  for (int64_t i = 0; i < I; ++i) xf[i] = static_cast<float>(xp[i]);
  const T* wp = w.data_ptr<T>();
  const T* bp = b.has_value() ? b->data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  at::parallel_for(0, O, 16, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      float s = dot(wp + o * I, xf.data(), I);
      if (bp) s += static_cast<float>(bp[o]);
      yp[o] = static_cast<T>(s);
    }
  });
}

// y = x w^T + b for one row: x (I,), w (O, I) contiguous, b (O,) or None; fp32 or bf16 throughout
at::Tensor linear_row(at::Tensor x, at::Tensor w, c10::optional<at::Tensor> b) {
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous() && x.numel() == w.size(1), "linear_row: bad shapes");
  auto y = at::empty({w.size(0)}, w.options());
  if (w.scalar_type() == at::kBFloat16) linear_row_impl<at::BFloat16>(x, w, b, y);
  else linear_row_impl<float>(x, w, b, y);
  return y;
}

template <typename T>
static void attend_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), Hkv = k.size(1), S = k.size(2);
  const int64_t group = H / Hkv;
  const T* qp = q.data_ptr<T>(); const T* kp = k.data_ptr<T>(); const T* vp = v.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(D), acc(D), p(S);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H, hk = h / group;
      const T* qrow = qp + b * q.stride(0) + h * q.stride(1);
      for (int64_t d = 0; d < D; ++d) qf[d] = static_cast<float>(qrow[d]) * static_cast<float>(scale);
      const T* kb = kp + b * k.stride(0) + hk * k.stride(1);
      const T* vb = vp + b * v.stride(0) + hk * v.stride(1);
      float mx = -INFINITY;
      for (int64_t s = 0; s < S; ++s) { p[s] = dot(kb + s * k.stride(2), qf.data(), D); mx = std::max(mx, p[s]); }
      float total = 0.f;
      for (int64_t s = 0; s < S; ++s) { p[s] = std::exp(p[s] - mx); total += p[s]; }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t s = 0; s < S; ++s) {
        const T* vrow = vb + s * v.stride(2);
        const float w = p[s];
        for (int64_t d = 0; d < D; ++d) acc[d] += w * static_cast<float>(vrow[d]);
      }
      T* orow = op + bh * D;
      for (int64_t d = 0; d < D; ++d) orow[d] = static_cast<T>(acc[d] / total);
    }
  });
}

// softmax(q k^T * scale) v for one query per head: q (B, H, 1, D), k/v (B, Hkv, S, D) with unit stride in D
at::Tensor attend_one(at::Tensor q, at::Tensor k, at::Tensor v, double scale) {
  TORCH_CHECK(q.size(2) == 1 && q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "attend_one: bad layout");
  auto out = at::empty({q.size(0), q.size(1), 1, q.size(3)}, q.options());
  if (q.scalar_type() == at::kBFloat16) attend_impl<at::BFloat16>(q, k, v, scale, out);
  else attend_impl<float>(q, k, v, scale, out);
  return out;
}
"""

_NAME = "tformer_decode_kernels"
_FUNCTIONS = ["linear_row", "attend_one"]
_DTYPES = (torch.float32, torch.bfloat16)
_WIDEN_ROWS = 16  # from this many rows on, a bf16 linear runs faster through fp32 (measured on AVX2)


def is_built() -> bool:
    """Whether a compiled copy is already cached, so that ``load()`` takes a second, not a minute."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory(_NAME, verbose=False)) / f"{_NAME}.so").is_file()
    except Exception:  # a private helper of torch; treat any change as "not built"
        return False


@functools.cache
def load() -> Any | None:
    """The compiled extension, or None where it cannot be built (not x86 with AVX2, no compiler)."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None
    try:
        from torch.utils.cpp_extension import load_inline

        # -fopenmp without -lgomp: parallel_for uses the OpenMP runtime torch already loaded
        return load_inline(
            _NAME,
            cpp_sources=[_SOURCE],
            functions=_FUNCTIONS,
            extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"],
            verbose=False,
        )
    except Exception as e:  # no compiler, headers, ...: fall back to PyTorch
        log.warning(
            "native decode kernels unavailable (%s); using PyTorch", str(e).splitlines()[0] if str(e) else e
        )
        return None


def _usable(*tensors: torch.Tensor) -> bool:
    """CPU tensors of a supported dtype, and no autograd recording (the kernels have no backward)."""
    return not torch.is_grad_enabled() and all(t.device.type == "cpu" and t.dtype in _DTYPES for t in tensors)


def _linear_forward(module: nn.Linear, ext, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear.forward with the native kernel for a single row (decoding at batch 1).

    Many bf16 rows (a prompt) go through fp32: without native bf16 instructions PyTorch's bf16 GEMM is
    several times slower than widening the weight and using the fp32 one.
    """
    w, b = module.weight, module.bias
    if x.dtype != w.dtype or not _usable(x, w):
        return F.linear(x, w, b)
    rows = x.numel() // x.shape[-1]
    if rows == 1:
        return ext.linear_row(x.reshape(-1).contiguous(), w.contiguous(), b).view(*x.shape[:-1], w.shape[0])
    if w.dtype == torch.bfloat16 and rows >= _WIDEN_ROWS:
        return F.linear(x.float(), w.float(), None if b is None else b.float()).to(w.dtype)
    return F.linear(x, w, b)


def _attend(ext, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor | None:
    """Single-query attention (B, H, 1, D), or None to let PyTorch handle this call."""
    if q.shape[2] != 1 or not (q.dtype == k.dtype == v.dtype) or not _usable(q, k, v):
        return None
    if q.stride(3) != 1 or k.stride(3) != 1 or v.stride(3) != 1:
        return None
    return ext.attend_one(q, k, v, scale)


@contextmanager
def native_kernels(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Route the model's single-row linears and single-query attentions through the native kernels.

    Yields whether the kernels are active. Everything is restored on exit. Results match PyTorch's to
    float rounding (summation order differs), so greedy outputs can differ where two logits nearly tie.
    """
    ext = load() if enabled else None
    if ext is None:
        yield False
        return
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    for m in linears:
        m.forward = functools.partial(_linear_forward, m, ext)
    for m in attentions:
        m.decode_kernel = functools.partial(_attend, ext)
    try:
        yield True
    finally:
        for m in linears:
            del m.forward
        for m in attentions:
            m.decode_kernel = None
