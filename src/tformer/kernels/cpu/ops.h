// Building blocks shared by the kernels, independent of the instruction set: rounding to the model's
// dtype, and the GEMV every projection runs through. The vector primitives (dot, dot4) come from the
// vec.h of the instruction set being built (avx2/vec.h, ...).
//
// Shapes: O output features, I input features.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "vec.h"

namespace tformer {

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

// the data of an optional tensor (undefined: absent), or null
template <typename T>
static inline const T* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

}  // namespace tformer
