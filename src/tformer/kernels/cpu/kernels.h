// The kernels the extension exports (bindings.cpp binds them to Python), and the named description of a
// decoder layer that decode_layer computes.
//
// Shapes: O output features, I input features; B batch, H query heads, Hkv key/value heads, S keys or
// cache slots, D head_dim, d d_model, F the feed-forward width.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace tformer {

enum class Norm { layer, rms };                          // LayerNorm, or RMSNorm (T5 / Llama)
enum class Activation { relu, gelu, gelu_tanh, silu };   // gelu: the erf form

// One pre-norm self-attention decoder layer, by field name (bindings.cpp fills it from Python keyword
// arguments of the same names). Undefined tensors are absent: biases, and gate_* for a plain
// (ungated) feed-forward network. Every tensor is contiguous, on the CPU, in the layer's dtype (fp32 or
// bf16, that of attn_norm_weight).
struct DecoderLayer {
  Norm norm = Norm::layer;
  double eps = 1e-5;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  double scale = 1.0;  // the multiplier of q k^T
  Activation activation = Activation::gelu;
  at::Tensor attn_norm_weight, attn_norm_bias;  // (d,)
  at::Tensor qkv_weight, qkv_bias;              // (H*D + 2*Hkv*D, d): q, k, v stacked
  at::Tensor out_weight, out_bias;              // (d, H*D)
  at::Tensor ffn_norm_weight, ffn_norm_bias;    // (d,)
  at::Tensor gate_weight, gate_bias;            // (F, d): act(gate h) * up h when present
  at::Tensor up_weight, up_bias;                // (F, d)
  at::Tensor down_weight, down_bias;            // (d, F)
};

// Throws std::invalid_argument (Python: ValueError) naming the first field that is missing, of another
// dtype, not contiguous, or of a shape that does not fit the others.
void check_layer(const DecoderLayer& layer);

// y = x w^T + b for one row: x (I,), w (O, I) contiguous, b (O,) or undefined; fp32 or bf16 throughout.
at::Tensor linear_row(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// softmax(q k^T * scale) v for one query per head: q (B, H, 1, D), k/v (B, Hkv, S, D) with unit stride in D.
at::Tensor attend_one(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale);

// TransformerBlock.forward for one token at batch 1 with a KVCache: x (d,), caches (1, Hkv, S, D)
// contiguous in the layer's dtype, written at slot ``pos``; cos/sin (D,) for RoPE, or undefined.
// Returns the new x (d,).
at::Tensor decode_layer(const DecoderLayer& layer, const at::Tensor& x, at::Tensor& k_cache, at::Tensor& v_cache,
                        int64_t pos, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace tformer
