// A GEMV for one input row: decoding at batch 1 reads every weight once, and PyTorch's GEMM path for a
// single row runs well below the memory bandwidth (for bf16 without native bf16 instructions, far below).

#include <ATen/ops/empty.h>

#include <vector>

#include "kernels.h"
#include "ops.h"

namespace tformer {

template <typename T>
static void linear_row_impl(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::Tensor& y) {
  const int64_t O = w.size(0), I = w.size(1);
  std::vector<float> xf(I), yf(O);
  const T* xp = x.data_ptr<T>();
  for (int64_t i = 0; i < I; ++i) xf[i] = static_cast<float>(xp[i]);
  gemv<T>(w.data_ptr<T>(), ptr_or_null<T>(b), xf.data(), yf.data(), O, I);
  T* yp = y.data_ptr<T>();
  for (int64_t o = 0; o < O; ++o) yp[o] = static_cast<T>(yf[o]);
}

at::Tensor linear_row(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous() && w.dim() == 2 && x.numel() == w.size(1),
              "linear_row: bad shapes");
  TORCH_CHECK(x.scalar_type() == w.scalar_type() && (!b.defined() || b.scalar_type() == w.scalar_type()),
              "linear_row: x, w and b must share a dtype");
  TORCH_CHECK(!b.defined() || (b.is_contiguous() && b.numel() == w.size(0)), "linear_row: bad bias");
  auto y = at::empty({w.size(0)}, w.options());
  if (w.scalar_type() == at::kBFloat16) linear_row_impl<at::BFloat16>(x, w, b, y);
  else linear_row_impl<float>(x, w, b, y);
  return y;
}

}  // namespace tformer
