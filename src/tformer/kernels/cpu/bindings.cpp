// Python bindings: the kernels of kernels.h, and DecoderLayer built from keyword arguments named as its
// fields, so that Python and C++ agree by name rather than by position.

// torch/csrc/utils/pybind.h rather than torch/extension.h: the tensor casters without the whole C++
// frontend, which would triple the build time
#include <torch/csrc/utils/pybind.h>

#include <map>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace py = pybind11;

namespace tformer {
namespace {

// every field DecoderLayer(...) accepts; required ones must be given and not None
const std::map<std::string, bool> kFields = {
    {"norm", true},           {"eps", true},           {"n_heads", true},          {"n_kv_heads", true},
    {"head_dim", true},       {"scale", true},         {"activation", true},       {"attn_norm_weight", true},
    {"attn_norm_bias", false}, {"qkv_weight", true},   {"qkv_bias", false},        {"out_weight", true},
    {"out_bias", false},      {"ffn_norm_weight", true}, {"ffn_norm_bias", false}, {"gate_weight", false},
    {"gate_bias", false},     {"up_weight", true},     {"up_bias", false},         {"down_weight", true},
    {"down_bias", false},
};
const std::map<std::string, Norm> kNorms = {{"layernorm", Norm::layer}, {"rmsnorm", Norm::rms}};
const std::map<std::string, Activation> kActivations = {
    {"relu", Activation::relu}, {"gelu", Activation::gelu}, {"gelu_tanh", Activation::gelu_tanh},
    {"silu", Activation::silu}};

std::string names(const std::map<std::string, bool>& fields) {
  std::string out;
  for (const auto& [name, required] : fields) out += (out.empty() ? "" : ", ") + name + (required ? "" : "?");
  return out;
}

// Reads DecoderLayer's fields by name; a missing, unknown or mistyped one is a ValueError naming it.
class Fields {
 public:
  explicit Fields(const py::kwargs& kwargs) : kwargs_(kwargs) {
    for (const auto& item : kwargs) {
      const auto name = py::str(item.first).cast<std::string>();
      if (!kFields.count(name))
        throw std::invalid_argument("DecoderLayer: unknown field '" + name + "'; the fields are " + names(kFields) +
                                    " (? marks optional ones)");
    }
    std::string missing;
    for (const auto& [name, required] : kFields)
      if (required && lookup(name.c_str()).is_none()) missing += (missing.empty() ? "'" : ", '") + name + "'";
    if (!missing.empty()) throw std::invalid_argument("DecoderLayer: missing field(s) " + missing);
  }

  template <typename V>
  V get(const char* name) {
    const py::object value = lookup(name);
    if (value.is_none()) throw std::invalid_argument(std::string("DecoderLayer: missing field '") + name + "'");
    try {
      return value.cast<V>();
    } catch (const py::cast_error&) {
      throw std::invalid_argument(std::string("DecoderLayer: field '") + name + "' has the wrong type (" +
                                  std::string(py::str(py::type::of(value).attr("__name__"))) + ")");
    }
  }

  // a tensor field; optional ones may be left out or None (the tensor stays undefined: absent)
  at::Tensor tensor(const char* name) {
    if (!kFields.at(name) && lookup(name).is_none()) return at::Tensor();
    return get<at::Tensor>(name);
  }

  template <typename E>
  E choice(const char* name, const std::map<std::string, E>& options) {
    const auto value = get<std::string>(name);
    const auto it = options.find(value);
    if (it != options.end()) return it->second;
    std::string known;
    for (const auto& option : options) known += (known.empty() ? "" : ", ") + option.first;
    throw std::invalid_argument(std::string("DecoderLayer: field '") + name + "' is '" + value + "'; one of " + known);
  }

 private:
  py::object lookup(const char* name) {
    return kwargs_.contains(name) ? py::reinterpret_borrow<py::object>(kwargs_[name]) : py::none();
  }
  const py::kwargs& kwargs_;
};

DecoderLayer layer_from_fields(const py::kwargs& kwargs) {
  Fields f(kwargs);
  DecoderLayer L;
  L.norm = f.choice("norm", kNorms);
  L.eps = f.get<double>("eps");
  L.n_heads = f.get<int64_t>("n_heads");
  L.n_kv_heads = f.get<int64_t>("n_kv_heads");
  L.head_dim = f.get<int64_t>("head_dim");
  L.scale = f.get<double>("scale");
  L.activation = f.choice("activation", kActivations);
  L.attn_norm_weight = f.tensor("attn_norm_weight");
  L.attn_norm_bias = f.tensor("attn_norm_bias");
  L.qkv_weight = f.tensor("qkv_weight");
  L.qkv_bias = f.tensor("qkv_bias");
  L.out_weight = f.tensor("out_weight");
  L.out_bias = f.tensor("out_bias");
  L.ffn_norm_weight = f.tensor("ffn_norm_weight");
  L.ffn_norm_bias = f.tensor("ffn_norm_bias");
  L.gate_weight = f.tensor("gate_weight");
  L.gate_bias = f.tensor("gate_bias");
  L.up_weight = f.tensor("up_weight");
  L.up_bias = f.tensor("up_bias");
  L.down_weight = f.tensor("down_weight");
  L.down_bias = f.tensor("down_bias");
  check_layer(L);
  return L;
}

at::Tensor optional_tensor(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

}  // namespace
}  // namespace tformer

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace tformer;
  m.doc() = "tformer's native CPU kernels for one-token decoding (see tformer/kernels/cpu/kernels.h)";
  m.def(
      "linear_row",
      [](const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
        return linear_row(x, w, optional_tensor(b));
      },
      "y = x w^T + b for one row x (I,), w (O, I), b (O,) or None", py::arg("x"), py::arg("w"), py::arg("b"));
  m.def("attend_one", &attend_one, "softmax(q k^T * scale) v for q (B, H, 1, D), k/v (B, Hkv, S, D)", py::arg("q"),
        py::arg("k"), py::arg("v"), py::arg("scale"));
  py::class_<DecoderLayer>(m, "DecoderLayer",
                           "A pre-norm decoder layer by named fields (kernels.h); checked when built and at each step")
      .def(py::init(&layer_from_fields));
  m.def(
      "decode_layer",
      [](const DecoderLayer& layer, const at::Tensor& x, at::Tensor k_cache, at::Tensor v_cache, int64_t pos,
         const std::optional<at::Tensor>& cos, const std::optional<at::Tensor>& sin) {
        return decode_layer(layer, x, k_cache, v_cache, pos, optional_tensor(cos), optional_tensor(sin));
      },
      "The layer for one token x (d,), writing the caches (1, Hkv, S, D) at pos; cos/sin (D,) for RoPE",
      py::arg("layer"), py::arg("x"), py::arg("k_cache"), py::arg("v_cache"), py::arg("pos"),
      py::arg("cos") = py::none(), py::arg("sin") = py::none());
}
