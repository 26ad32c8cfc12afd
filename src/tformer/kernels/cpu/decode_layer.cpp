// One pre-norm decoder layer for one token at batch 1, in a single call: norm, q/k/v, RoPE, cache write,
// attention, output projection, norm, plain or gated feed-forward network. Each of the few dozen small
// operations of a layer costs PyTorch microseconds of dispatch; here they cost nothing, and every
// intermediate result is rounded to the model's dtype where PyTorch rounds it, so the two agree.
// TransformerBlock.forward stays the reference (the tests compare the two at every decoding step).

#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "ops.h"

namespace tformer {

// ---- checks: a field that does not fit is a ValueError naming it, never a read past a buffer ----

static std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}

[[noreturn]] static void fail(const std::string& message) { throw std::invalid_argument(message); }

// a tensor field: present unless optional, the layer's dtype, contiguous, on the CPU, of the given shape
// (``where`` starts the message: "DecoderLayer" for the layer's fields, "decode_layer" for the per-token
// ones); runs at every step, so the message is only built on failure
static void check_tensor(const char* where, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                         at::ScalarType dtype, bool optional = false) {
  auto field = [&] { return std::string(where) + ": '" + name + "'"; };
  if (!t.defined()) {
    if (optional) return;
    fail(std::string(where) + ": missing field '" + name + "'");
  }
  if (!t.device().is_cpu()) fail(field() + " is on " + t.device().str() + ", not the CPU");
  if (t.scalar_type() != dtype)
    fail(field() + " is " + std::string(c10::toString(t.scalar_type())) + ", the layer is " + c10::toString(dtype) +
         " (the dtype of 'attn_norm_weight')");
  if (t.sizes() != shape) fail(field() + " is " + shape_str(t.sizes()) + "; the layer needs " + shape_str(shape));
  if (!t.is_contiguous()) fail(field() + " is not contiguous");
}

void check_layer(const DecoderLayer& L) {
  const char* W = "DecoderLayer";
  if (!L.attn_norm_weight.defined()) fail("DecoderLayer: missing field 'attn_norm_weight'");
  if (L.attn_norm_weight.dim() != 1) fail("DecoderLayer: 'attn_norm_weight' must be 1-D (d_model,)");
  if (!L.up_weight.defined()) fail("DecoderLayer: missing field 'up_weight'");
  if (L.up_weight.dim() != 2) fail("DecoderLayer: 'up_weight' must be 2-D (d_ff, d_model)");
  const auto dtype = L.attn_norm_weight.scalar_type();
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    fail("DecoderLayer: the layer's dtype is " + std::string(c10::toString(dtype)) + "; float32 or bfloat16 only");
  if (L.n_heads <= 0 || L.n_kv_heads <= 0 || L.head_dim <= 0 || L.n_heads % L.n_kv_heads != 0)
    fail("DecoderLayer: n_heads=" + std::to_string(L.n_heads) + ", n_kv_heads=" + std::to_string(L.n_kv_heads) +
         ", head_dim=" + std::to_string(L.head_dim) + ": need positive sizes, n_kv_heads dividing n_heads");
  if (!(L.eps >= 0.0)) fail("DecoderLayer: 'eps' must be >= 0, got " + std::to_string(L.eps));
  const int64_t d = L.attn_norm_weight.size(0), F = L.up_weight.size(0);
  const int64_t qd = L.n_heads * L.head_dim, qkv = qd + 2 * L.n_kv_heads * L.head_dim;
  check_tensor(W, "attn_norm_weight", L.attn_norm_weight, {d}, dtype);
  check_tensor(W, "attn_norm_bias", L.attn_norm_bias, {d}, dtype, true);
  check_tensor(W, "qkv_weight", L.qkv_weight, {qkv, d}, dtype);
  check_tensor(W, "qkv_bias", L.qkv_bias, {qkv}, dtype, true);
  check_tensor(W, "out_weight", L.out_weight, {d, qd}, dtype);
  check_tensor(W, "out_bias", L.out_bias, {d}, dtype, true);
  check_tensor(W, "ffn_norm_weight", L.ffn_norm_weight, {d}, dtype);
  check_tensor(W, "ffn_norm_bias", L.ffn_norm_bias, {d}, dtype, true);
  check_tensor(W, "gate_weight", L.gate_weight, {F, d}, dtype, true);
  check_tensor(W, "gate_bias", L.gate_bias, {F}, dtype, true);
  if (L.gate_bias.defined() && !L.gate_weight.defined()) fail("DecoderLayer: 'gate_bias' without 'gate_weight'");
  check_tensor(W, "up_weight", L.up_weight, {F, d}, dtype);
  check_tensor(W, "up_bias", L.up_bias, {F}, dtype, true);
  check_tensor(W, "down_weight", L.down_weight, {d, F}, dtype);
  check_tensor(W, "down_bias", L.down_bias, {d}, dtype, true);
}

// the per-token arguments against the layer: x (d,), caches (1, Hkv, S, D), pos < S, cos/sin (D,) or absent
static void check_step(const DecoderLayer& L, const at::Tensor& x, const at::Tensor& kc, const at::Tensor& vc,
                       int64_t pos, const at::Tensor& cos, const at::Tensor& sin) {
  check_layer(L);
  const char* W = "decode_layer";
  const auto dtype = L.attn_norm_weight.scalar_type();
  const int64_t d = L.attn_norm_weight.size(0), D = L.head_dim;
  check_tensor(W, "x", x, {d}, dtype);
  if (kc.dim() != 4) fail("decode_layer: 'k_cache' must be (1, n_kv_heads, slots, head_dim)");
  const int64_t S = kc.size(2);
  check_tensor(W, "k_cache", kc, {1, L.n_kv_heads, S, D}, dtype);
  check_tensor(W, "v_cache", vc, {1, L.n_kv_heads, S, D}, dtype);
  if (pos < 0 || pos >= S)
    fail("decode_layer: position " + std::to_string(pos) + " is outside the cache's " + std::to_string(S) + " slots");
  if (cos.defined() != sin.defined()) fail("decode_layer: RoPE needs both 'cos' and 'sin'");
  if (cos.defined() && D % 2 != 0) fail("decode_layer: RoPE needs an even head_dim, got " + std::to_string(D));
  check_tensor(W, "cos", cos, {D}, dtype, true);
  check_tensor(W, "sin", sin, {D}, dtype, true);
}

// ---- the layer ----

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

static inline float activate(float v, Activation act) {
  switch (act) {
    case Activation::relu: return v > 0.f ? v : 0.f;
    case Activation::gelu: return 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));
    // 0.5 v (1 + tanh(u)) = v sigmoid(2u): one exp instead of a (slower) tanh
    case Activation::gelu_tanh: return v / (1.f + std::exp(-1.5957691216057308f * (v + 0.044715f * v * v * v)));
    default: return v / (1.f + std::exp(-v));  // silu
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
static void decode_layer_impl(const DecoderLayer& L, const at::Tensor& x, at::Tensor& kc, at::Tensor& vc, int64_t pos,
                              const at::Tensor& cos_t, const at::Tensor& sin_t, at::Tensor& out) {
  const int64_t d = x.numel(), H = L.n_heads, Hkv = L.n_kv_heads, D = L.head_dim, S = kc.size(2), group = H / Hkv;
  const int64_t qd = H * D, kvd = Hkv * D, F = L.up_weight.size(0);
  const bool rms = L.norm == Norm::rms;
  const float eps = static_cast<float>(L.eps);
  auto w = [](const at::Tensor& t) { return ptr_or_null<T>(t); };
  std::vector<float> xs(d), h(d), qkv(qd + 2 * kvd), att(qd), y(d), up(F), gate(L.gate_weight.defined() ? F : 0);
  const T* xp = x.data_ptr<T>();
  for (int64_t i = 0; i < d; ++i) xs[i] = static_cast<float>(xp[i]);

  // attention: q, k, v for this token; k, v written to the cache slot ``pos``; softmax over slots 0..pos
  norm<T>(xs.data(), w(L.attn_norm_weight), w(L.attn_norm_bias), rms, eps, h.data(), d);
  gemv<T>(w(L.qkv_weight), w(L.qkv_bias), h.data(), qkv.data(), qd + 2 * kvd, d);
  float* q = qkv.data(); float* k = q + qd; float* v = k + kvd;
  if (cos_t.defined()) {
    for (int64_t hh = 0; hh < H; ++hh) rotate<T>(q + hh * D, w(cos_t), w(sin_t), D);
    for (int64_t hh = 0; hh < Hkv; ++hh) rotate<T>(k + hh * D, w(cos_t), w(sin_t), D);
  }
  T* kp = kc.data_ptr<T>(); T* vp = vc.data_ptr<T>();  // (1, Hkv, S, D) contiguous
  for (int64_t hh = 0; hh < Hkv; ++hh)
    for (int64_t i = 0; i < D; ++i) {
      kp[(hh * S + pos) * D + i] = static_cast<T>(k[hh * D + i]);
      vp[(hh * S + pos) * D + i] = static_cast<T>(v[hh * D + i]);
    }
  const float scale = static_cast<float>(L.scale);
  at::parallel_for(0, H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qs(D), pr(pos + 1), acc(D);
    for (int64_t hh = begin; hh < end; ++hh) {
      const T* kb = kp + (hh / group) * S * D; const T* vb = vp + (hh / group) * S * D;
      for (int64_t i = 0; i < D; ++i) qs[i] = q[hh * D + i] * scale;
      float mx = -INFINITY, total = 0.f;
      for (int64_t s = 0; s <= pos; ++s) { pr[s] = dot(kb + s * D, qs.data(), D); mx = std::max(mx, pr[s]); }
      for (int64_t s = 0; s <= pos; ++s) { pr[s] = std::exp(pr[s] - mx); total += pr[s]; }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t s = 0; s <= pos; ++s)
        for (int64_t i = 0; i < D; ++i) acc[i] += pr[s] * static_cast<float>(vb[s * D + i]);
      for (int64_t i = 0; i < D; ++i) att[hh * D + i] = rnd<T>(acc[i] / total);
    }
  });
  gemv<T>(w(L.out_weight), w(L.out_bias), att.data(), y.data(), d, qd);
  for (int64_t i = 0; i < d; ++i) xs[i] = rnd<T>(xs[i] + y[i]);

  // feed-forward: down(act(up h)) or, gated, down(act(gate h) * up h)
  norm<T>(xs.data(), w(L.ffn_norm_weight), w(L.ffn_norm_bias), rms, eps, h.data(), d);
  const Activation act = L.activation;
  if (!gate.empty()) {
    gemv<T>(w(L.gate_weight), w(L.gate_bias), h.data(), gate.data(), F, d,
            [&](int64_t, float v) { return rnd<T>(activate(v, act)); });
    gemv<T>(w(L.up_weight), w(L.up_bias), h.data(), up.data(), F, d,
            [&](int64_t o, float v) { return rnd<T>(gate[o] * v); });
  } else {
    gemv<T>(w(L.up_weight), w(L.up_bias), h.data(), up.data(), F, d,
            [&](int64_t, float v) { return rnd<T>(activate(v, act)); });
  }
  gemv<T>(w(L.down_weight), w(L.down_bias), up.data(), y.data(), d, F);
  T* op = out.data_ptr<T>();
  for (int64_t i = 0; i < d; ++i) op[i] = static_cast<T>(xs[i] + y[i]);
}

at::Tensor decode_layer(const DecoderLayer& layer, const at::Tensor& x, at::Tensor& k_cache, at::Tensor& v_cache,
                        int64_t pos, const at::Tensor& cos, const at::Tensor& sin) {
  check_step(layer, x, k_cache, v_cache, pos, cos, sin);
  auto out = at::empty_like(x);
  if (x.scalar_type() == at::kBFloat16)
    decode_layer_impl<at::BFloat16>(layer, x, k_cache, v_cache, pos, cos, sin, out);
  else
    decode_layer_impl<float>(layer, x, k_cache, v_cache, pos, cos, sin, out);
  return out;
}

}  // namespace tformer
