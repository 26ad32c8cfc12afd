"""Optional native CPU kernels for batch-1 decoding: a bandwidth-bound GEMV, single-query attention, and a
whole decoder layer for one token.

Decoding one token reads every weight once with a single input row. PyTorch routes such a row through
GEMM code that runs well below the memory bandwidth (for bfloat16 on CPUs without native bf16
instructions, AVX2, far below it), and each of the few dozen small operations of a layer costs
microseconds of dispatch. Small AVX2/FMA loops here (fp32 accumulation, bf16 widened by a shift) read the
weights at the memory's speed, and ``decode_layer`` runs a whole pre-norm layer (norm, q/k/v, RoPE, cache
write, attention, output projection, norm, plain or gated feed-forward network) in one call, rounding to
the model's dtype where PyTorch does. ``TransformerBlock.forward`` stays the reference: the tests compare
the two at every decoding step.

With them on, bf16 linears over many rows (prefill) also run through fp32, which is several times faster
there. They are opt-in: ``with native_kernels(model): model.generate(...)``. The first use compiles the C++
below with ``torch.utils.cpp_extension`` (about a minute; cached afterwards). Anywhere they cannot
apply (no AVX2, no compiler, several rows, masks, gradients, rolling caches, post-norm layers, mixtures of
experts), the ordinary PyTorch path runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tformer.nn.attention import Attention
from tformer.nn.block import TransformerBlock
from tformer.nn.feedforward import FeedForward, GatedFeedForward
from tformer.nn.kv_cache import KVCache
from tformer.nn.norms import RMSNorm

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

// dot products of four consecutive rows (row stride n) with x: each x load serves four FMAs, and four
// streams in flight keep the memory busier than one
template <typename T>
static inline void dot4(const T* rows, int64_t n, const float* x, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(load8(rows + i), xv, a0);
    a1 = _mm256_fmadd_ps(load8(rows + n + i), xv, a1);
    a2 = _mm256_fmadd_ps(load8(rows + 2 * n + i), xv, a2);
    a3 = _mm256_fmadd_ps(load8(rows + 3 * n + i), xv, a3);
  }
  out[0] = hsum(a0), out[1] = hsum(a1), out[2] = hsum(a2), out[3] = hsum(a3);
  for (; i < n; ++i)
    for (int r = 0; r < 4; ++r) out[r] += static_cast<float>(rows[r * n + i]) * x[i];
}

// a value rounded to T and back: where PyTorch would store an intermediate result in T
template <typename T>
static inline float rnd(float v) { return static_cast<float>(static_cast<T>(v)); }

struct Identity {
  float operator()(int64_t, float v) const { return v; }
};

// y[0:O] = then(o, w x + b) for fp32 x (I,), w (O, I) and b (O,) or null in T, the sum rounded to T
// first; ``then`` is an elementwise epilogue (an activation), run by the thread that computed the row
template <typename T, typename Then = Identity>
static void gemv(const T* w, const T* b, const float* x, float* y, int64_t O, int64_t I, Then then = Then()) {
  at::parallel_for(0, O, 16, [&](int64_t begin, int64_t end) {
    int64_t o = begin;
    for (; o + 4 <= end; o += 4) dot4(w + o * I, I, x, y + o);
    for (; o < end; ++o) y[o] = dot(w + o * I, x, I);
    for (o = begin; o < end; ++o) y[o] = then(o, rnd<T>(b ? y[o] + static_cast<float>(b[o]) : y[o]));
  });
}

template <typename T>
static const T* ptr_or_null(const c10::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr<T>() : nullptr; }

template <typename T>
static void linear_row_impl(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                            at::Tensor& y) {
  const int64_t O = w.size(0), I = w.size(1);
  std::vector<float> xf(I), yf(O);
  const T* xp = x.data_ptr<T>();
  for (int64_t i = 0; i < I; ++i) xf[i] = static_cast<float>(xp[i]);
  gemv<T>(w.data_ptr<T>(), ptr_or_null<T>(b), xf.data(), yf.data(), O, I);
  T* yp = y.data_ptr<T>();
  for (int64_t o = 0; o < O; ++o) yp[o] = static_cast<T>(yf[o]);
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

// ---- one pre-norm decoder layer for one token (batch 1): TransformerBlock.forward at T = 1 with a KVCache ----

// LayerNorm (mean and variance) or RMSNorm (mean square, T5/Llama: the normalised value is rounded to T
// before the weight multiplies it), statistics in double
template <typename T>
static void norm(const float* x, const T* w, const T* b, bool rms, float eps, float* out, int64_t d) {
  double mean = 0.0, var = 0.0;
  if (!rms) {
    for (int64_t i = 0; i < d; ++i) mean += x[i];
    mean /= d;
  }
  for (int64_t i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.0f / std::sqrt(static_cast<float>(var / d) + eps), m = static_cast<float>(mean);
  for (int64_t i = 0; i < d; ++i) {
    float h = (x[i] - m) * inv;
    if (rms) h = rnd<T>(h);
    h = h * static_cast<float>(w[i]) + (b ? static_cast<float>(b[i]) : 0.0f);
    out[i] = rnd<T>(h);
  }
}

// activation codes: 0 relu, 1 gelu (erf), 2 gelu_tanh, 3 silu
static inline float activate(float v, int64_t act) {
  switch (act) {
    case 0: return v > 0.f ? v : 0.f;
    case 1: return 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));
    // 0.5 v (1 + tanh(u)) = v sigmoid(2u): one exp instead of a (slower) tanh
    case 2: return v / (1.f + std::exp(-1.5957691216057308f * (v + 0.044715f * v * v * v)));
    default: return v / (1.f + std::exp(-v));
  }
}

// RoPE on one head (D,): x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[D/2:], x[:D/2])
template <typename T>
static void rotate(float* x, const T* cos, const T* sin, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = rnd<T>(a * static_cast<float>(cos[i]) - b * static_cast<float>(sin[i]));
    x[i + half] = rnd<T>(b * static_cast<float>(cos[i + half]) + a * static_cast<float>(sin[i + half]));
  }
}

template <typename T>
static void decode_layer_impl(at::Tensor& out, const at::Tensor& x, const std::vector<c10::optional<at::Tensor>>& p,
                              bool rms, double eps, at::Tensor& kc, at::Tensor& vc, int64_t pos, int64_t H,
                              double scale, int64_t act) {
  // p: n1_w n1_b n2_w n2_b qkv_w qkv_b o_w o_b gate_w gate_b up_w up_b down_w down_b cos sin
  const int64_t d = x.numel(), Hkv = kc.size(1), S = kc.size(2), D = kc.size(3), group = H / Hkv;
  const int64_t qd = H * D, kvd = Hkv * D, F = p[10]->size(0);
  auto w = [&](int i) { return ptr_or_null<T>(p[i]); };
  std::vector<float> xs(d), h(d), qkv(qd + 2 * kvd), att(qd), y(d), up(F), gate(p[8].has_value() ? F : 0);
  const T* xp = x.data_ptr<T>();
  for (int64_t i = 0; i < d; ++i) xs[i] = static_cast<float>(xp[i]);

  // attention: q, k, v for this token; k, v written to the cache slot ``pos``; softmax over slots 0..pos
  norm<T>(xs.data(), w(0), w(1), rms, static_cast<float>(eps), h.data(), d);
  gemv<T>(w(4), w(5), h.data(), qkv.data(), qd + 2 * kvd, d);
  float* q = qkv.data(); float* k = q + qd; float* v = k + kvd;
  if (p[14].has_value()) {
    for (int64_t hh = 0; hh < H; ++hh) rotate<T>(q + hh * D, w(14), w(15), D);
    for (int64_t hh = 0; hh < Hkv; ++hh) rotate<T>(k + hh * D, w(14), w(15), D);
  }
  T* kp = kc.data_ptr<T>(); T* vp = vc.data_ptr<T>();  // (1, Hkv, S, D) contiguous
  for (int64_t hh = 0; hh < Hkv; ++hh)
    for (int64_t i = 0; i < D; ++i) {
      kp[(hh * S + pos) * D + i] = static_cast<T>(k[hh * D + i]);
      vp[(hh * S + pos) * D + i] = static_cast<T>(v[hh * D + i]);
    }
  at::parallel_for(0, H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qs(D), pr(pos + 1), acc(D);
    for (int64_t hh = begin; hh < end; ++hh) {
      const T* kb = kp + (hh / group) * S * D; const T* vb = vp + (hh / group) * S * D;
      for (int64_t i = 0; i < D; ++i) qs[i] = q[hh * D + i] * static_cast<float>(scale);
      float mx = -INFINITY, total = 0.f;
      for (int64_t s = 0; s <= pos; ++s) { pr[s] = dot(kb + s * D, qs.data(), D); mx = std::max(mx, pr[s]); }
      for (int64_t s = 0; s <= pos; ++s) { pr[s] = std::exp(pr[s] - mx); total += pr[s]; }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t s = 0; s <= pos; ++s)
        for (int64_t i = 0; i < D; ++i) acc[i] += pr[s] * static_cast<float>(vb[s * D + i]);
      for (int64_t i = 0; i < D; ++i) att[hh * D + i] = rnd<T>(acc[i] / total);
    }
  });
  gemv<T>(w(6), w(7), att.data(), y.data(), d, qd);
  for (int64_t i = 0; i < d; ++i) xs[i] = rnd<T>(xs[i] + y[i]);

  // feed-forward: down(act(up h)) or, gated, down(act(gate h) * up h)
  norm<T>(xs.data(), w(2), w(3), rms, static_cast<float>(eps), h.data(), d);
  if (!gate.empty()) {
    gemv<T>(w(8), w(9), h.data(), gate.data(), F, d, [&](int64_t, float v) { return rnd<T>(activate(v, act)); });
    gemv<T>(w(10), w(11), h.data(), up.data(), F, d, [&](int64_t o, float v) { return rnd<T>(gate[o] * v); });
  } else {
    gemv<T>(w(10), w(11), h.data(), up.data(), F, d, [&](int64_t, float v) { return rnd<T>(activate(v, act)); });
  }
  gemv<T>(w(12), w(13), up.data(), y.data(), d, F);
  T* op = out.data_ptr<T>();
  for (int64_t i = 0; i < d; ++i) op[i] = static_cast<T>(xs[i] + y[i]);
}

// One pre-norm self-attention layer for a single token: x (d,) in fp32 or bf16, every weight in the same
// dtype and contiguous, caches (1, Hkv, S, D) contiguous; writes the cache at ``pos``; returns the new x.
at::Tensor decode_layer(at::Tensor x, std::vector<c10::optional<at::Tensor>> params, bool rms, double eps,
                        at::Tensor k_cache, at::Tensor v_cache, int64_t pos, int64_t n_heads, double scale,
                        int64_t act) {
  TORCH_CHECK(params.size() == 16 && params[0].has_value() && params[2].has_value() && params[4].has_value()
              && params[6].has_value() && params[10].has_value() && params[12].has_value(), "decode_layer: weights");
  TORCH_CHECK(x.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.size(0) == 1
              && pos >= 0 && pos < k_cache.size(2) && n_heads % k_cache.size(1) == 0, "decode_layer: bad shapes");
  for (const auto& t : params)
    TORCH_CHECK(!t.has_value() || (t->scalar_type() == x.scalar_type() && t->is_contiguous()), "decode_layer: dtype/layout");
  TORCH_CHECK(k_cache.scalar_type() == x.scalar_type() && v_cache.scalar_type() == x.scalar_type(), "decode_layer: cache dtype");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes(), "decode_layer: cache shapes");
  const int64_t d = x.numel(), D = k_cache.size(3), qd = n_heads * D, kvd = k_cache.size(1) * D;
  const int64_t F = params[10]->size(0);
  auto is = [&](int i, std::vector<int64_t> shape) {  // absent optional tensors (biases, gate, RoPE) pass
    return !params[i].has_value() || params[i]->sizes() == at::IntArrayRef(shape);
  };
  TORCH_CHECK(is(0, {d}) && is(1, {d}) && is(2, {d}) && is(3, {d}) && is(4, {qd + 2 * kvd, d}) && is(5, {qd + 2 * kvd})
              && is(6, {d, qd}) && is(7, {d}) && is(8, {F, d}) && is(9, {F}) && is(10, {F, d}) && is(11, {F})
              && is(12, {d, F}) && is(13, {d}) && is(14, {D}) && is(15, {D}) && D % 2 == 0,
              "decode_layer: weight shapes do not match the layer");
  auto out = at::empty_like(x);
  if (x.scalar_type() == at::kBFloat16)
    decode_layer_impl<at::BFloat16>(out, x, params, rms, eps, k_cache, v_cache, pos, n_heads, scale, act);
  else
    decode_layer_impl<float>(out, x, params, rms, eps, k_cache, v_cache, pos, n_heads, scale, act);
  return out;
}
"""

_NAME = "tformer_decode_kernels"
_FUNCTIONS = ["linear_row", "attend_one", "decode_layer"]
_DTYPES = (torch.float32, torch.bfloat16)
_ACTIVATION_CODES = {"relu": 0, "gelu": 1, "gelu_tanh": 2, "silu": 3}  # as decode_layer's ``act``
_WIDEN_ROWS = 16  # from this many rows on, a bf16 linear runs faster through fp32 (measured on AVX2)


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


def _layer_arguments(block: TransformerBlock) -> tuple[list, bool, float, int] | None:
    """decode_layer's fixed arguments (weights, rms, eps, activation code) for a block it computes exactly
    as ``TransformerBlock.forward`` does, or None: pre-norm self-attention with fused q/k/v, LayerNorm or
    RMSNorm, a plain or gated feed-forward network with a known activation."""
    attn, ffn, norms = block.attn, block.ffn, (block.attn_norm, block.ffn_norm)
    if not block.pre_norm or block.cross_attn is not None or attn.cross:
        return None
    if all(type(n) is nn.LayerNorm and n.weight is not None and len(n.normalized_shape) == 1 for n in norms):
        rms = False
    elif all(type(n) is RMSNorm for n in norms):
        rms = True
    else:
        return None
    if type(ffn) not in (FeedForward, GatedFeedForward) or ffn.activation not in _ACTIVATION_CODES:
        return None
    if norms[0].eps != norms[1].eps:
        return None
    gate = [ffn.gate.weight, ffn.gate.bias] if isinstance(ffn, GatedFeedForward) else [None, None]
    params = [
        *(p for n in norms for p in (n.weight, getattr(n, "bias", None))),
        attn.qkv_proj.weight,
        attn.qkv_proj.bias,
        attn.o_proj.weight,
        attn.o_proj.bias,
        *gate,
        ffn.up.weight,
        ffn.up.bias,
        ffn.down.weight,
        ffn.down.bias,
    ]
    return params, rms, float(norms[0].eps), _ACTIVATION_CODES[ffn.activation]


def _layer_step(
    block: TransformerBlock, ext, fixed: tuple, x: torch.Tensor, input_pos, rope
) -> torch.Tensor | None:
    """One whole layer for one token at batch 1 with a (non-rolling) KV cache, or None for PyTorch."""
    params, rms, eps, act = fixed
    attn, cache = block.attn, block.attn.cache
    if type(cache) is not KVCache or x.shape[:2] != (1, 1) or block.training or attn.impl != "sdpa":
        return None
    if not (x.dtype == params[0].dtype == cache.k.dtype) or not _usable(x, cache.k) or cache.k.shape[0] != 1:
        return None
    cos = sin = None
    if rope is not None:
        cos, sin = rope[0].reshape(-1), rope[1].reshape(-1)  # (1, 1, D) -> (D,)
        if cos.dtype != x.dtype or cos.numel() != attn.head_dim:
            return None
    out = ext.decode_layer(
        x.reshape(-1),
        [*params, cos, sin],
        rms,
        eps,
        cache.k,
        cache.v,
        int(input_pos),
        attn.n_heads,
        attn.scale,
        act,
    )
    return out.view(1, 1, -1)  # (d,) -> (B=1, T=1, d)


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
    blocks = [(m, _layer_arguments(m)) for m in model.modules() if isinstance(m, TransformerBlock)]
    for m in linears:
        m.forward = functools.partial(_linear_forward, m, ext)
    for m in attentions:
        m.decode_kernel = functools.partial(_attend, ext)
    for m, fixed in blocks:
        if fixed is not None:
            m.decode_kernel = functools.partial(_layer_step, m, ext, fixed)
    try:
        yield True
    finally:
        for m in linears:
            del m.forward
        for m in attentions:
            m.decode_kernel = None
        for m, _ in blocks:
            m.decode_kernel = None
