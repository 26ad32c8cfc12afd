// Attention for one query per head over a cache prefix: a loop over the keys beats the dispatch of
// PyTorch's fused attention for a single query.

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "ops.h"

namespace tformer {

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

at::Tensor attend_one(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(2) == 1 && q.size(0) == k.size(0)
              && q.size(3) == k.size(3) && k.size(1) > 0 && q.size(1) % k.size(1) == 0, "attend_one: bad shapes");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "attend_one: bad layout");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "attend_one: mixed dtypes");
  auto out = at::empty({q.size(0), q.size(1), 1, q.size(3)}, q.options());
  if (q.scalar_type() == at::kBFloat16) attend_impl<at::BFloat16>(q, k, v, scale, out);
  else attend_impl<float>(q, k, v, scale, out);
  return out;
}

}  // namespace tformer
