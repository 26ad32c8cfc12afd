// AVX2 + FMA primitives: the vector half of the kernels in ../ for CPUs with AVX2 and FMA.
//
// Every instruction set the loader builds for (tformer/kernels/loader.py, ISAS) has a directory like
// this one holding a vec.h that defines the same two functions, dot and dot4, for T in {float,
// at::BFloat16}; the loader puts that directory on the include path, so ../ops.h picks the right one.
#pragma once

#include <immintrin.h>

#include <c10/util/BFloat16.h>
#include <cstdint>

namespace tformer {

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

}  // namespace tformer
