#include "engine/weights.h"

#include <cmath>
#include <cstring>
#include <regex>
#include <unordered_set>

#include "engine/checkpoint.h"
#include "engine/json.h"

namespace glm {

namespace {

// One expected checkpoint tensor and the slot it fills. The whole model is described by a list of
// these (built from the config), so names live in one table-building function, not in the forward.
// Which matrices a quantization scheme may touch: embeddings and the router are never quantized
// (not nn.Linear in HF, and in every FP8 release's ignore list); routed experts are the only MXFP4 ones.
enum class MatrixKind : uint8_t { Plain, Linear, RoutedExpert };

struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  Matrix* matrix = nullptr;           // 2-D weights, used in place from the mapping
  std::vector<float>* vector = nullptr;  // 1-D params, widened to fp32
  bool optional = false;
  MatrixKind kind = MatrixKind::Plain;
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class SlotTable {
 public:
  explicit SlotTable(const ModelConfig& c) : c_(c) {}

  void matrix(std::string name, int64_t rows, int64_t cols, Matrix* m, bool optional = false,
              MatrixKind kind = MatrixKind::Linear) {
    slots_.push_back({std::move(name), {rows, cols}, m, nullptr, optional, kind});
  }
  void vec(std::string name, int64_t n, std::vector<float>* v) { slots_.push_back({std::move(name), {n}, nullptr, v, false}); }

  void mlp(const std::string& p, int64_t inter, MlpWeights* m, MatrixKind kind = MatrixKind::Linear) {
    matrix(p + ".gate_proj.weight", inter, c_.hidden_size, &m->gate, false, kind);
    matrix(p + ".up_proj.weight", inter, c_.hidden_size, &m->up, false, kind);
    matrix(p + ".down_proj.weight", c_.hidden_size, inter, &m->down, false, kind);
  }

  // One decoder layer under model.layers.<index>; `moe` forces the MoE block (the MTP layer).
  void layer(int64_t index, bool moe, LayerWeights* L) {
    const std::string p = "model.layers." + std::to_string(index);
    const int64_t H = c_.hidden_size;
    vec(p + ".input_layernorm.weight", H, &L->input_norm);
    matrix(p + ".self_attn.q_proj.weight", c_.q_width(), H, &L->attn.q);
    matrix(p + ".self_attn.k_proj.weight", c_.kv_width(), H, &L->attn.k);
    matrix(p + ".self_attn.v_proj.weight", c_.kv_width(), H, &L->attn.v);
    matrix(p + ".self_attn.o_proj.weight", H, c_.q_width(), &L->attn.o);
    if (c_.attention_bias) {
      vec(p + ".self_attn.q_proj.bias", c_.q_width(), &L->attn.q_bias);
      vec(p + ".self_attn.k_proj.bias", c_.kv_width(), &L->attn.k_bias);
      vec(p + ".self_attn.v_proj.bias", c_.kv_width(), &L->attn.v_bias);
    }
    if (c_.use_qk_norm) {
      vec(p + ".self_attn.q_norm.weight", c_.head_dim, &L->attn.q_norm);
      vec(p + ".self_attn.k_norm.weight", c_.head_dim, &L->attn.k_norm);
    }
    vec(p + ".post_attention_layernorm.weight", H, &L->post_attention_norm);
    L->is_moe = moe;
    if (!moe) {
      mlp(p + ".mlp", c_.intermediate_size, &L->dense);
      return;
    }
    const int64_t E = c_.n_routed_experts;
    matrix(p + ".mlp.gate.weight", E, H, &L->moe.router, false, MatrixKind::Plain);
    vec(p + ".mlp.gate.e_score_correction_bias", E, &L->moe.correction_bias);
    L->moe.experts.resize(size_t(E));
    for (int64_t e = 0; e < E; ++e) {
      mlp(p + ".mlp.experts." + std::to_string(e), c_.moe_intermediate_size, &L->moe.experts[size_t(e)], MatrixKind::RoutedExpert);
    }
    mlp(p + ".mlp.shared_experts", c_.moe_intermediate_size * c_.n_shared_experts, &L->moe.shared);
  }

  std::vector<Slot>& slots() { return slots_; }

 private:
  const ModelConfig& c_;
  std::vector<Slot> slots_;
};

Status check_dtype(const TensorInfo& t) {
  switch (t.dtype) {
    case DType::F32: case DType::BF16: case DType::F16: return Status::ok();
    case DType::F8_E4M3: case DType::F8_E5M2:
      return Status::error(ErrorCode::UnsupportedFormat,
                           "tensor " + quote_for_message(t.name) + " is " + dtype_name(t.dtype) +
                               " but config.json's quantization_config does not make it an FP8 weight (absent, "
                               "or the module is left unquantized)");
    default:
      return format_error("tensor " + quote_for_message(t.name) + " has dtype " + dtype_name(t.dtype) +
                          "; weights must be F32, BF16 or F16");
  }
}

void widen(const TensorInfo& t, std::vector<float>* out) {
  out->resize(size_t(t.numel));
  for (uint64_t i = 0; i < t.numel; ++i) {
    const uint8_t* p = t.data + i * uint64_t(dtype_bits(t.dtype) / 8);
    uint16_t h;
    switch (t.dtype) {
      case DType::F32: std::memcpy(&(*out)[i], p, 4); break;
      case DType::BF16: std::memcpy(&h, p, 2); (*out)[i] = bf16_to_f32(h); break;
      default: std::memcpy(&h, p, 2); (*out)[i] = f16_to_f32(h); break;
    }
  }
}

std::string module_of(const std::string& weight_name) {
  static const std::string kSuffix = ".weight";
  return weight_name.substr(0, weight_name.size() - kSuffix.size());
}

// Binds matrix slots in whatever storage the quantization scheme implies for them, and checks the
// companion tensors (scales, packed blocks) as hostile input: presence, dtype, exact shape, and every
// scale value (finite, non-negative; E8M0 never the NaN code) before the forward pass can read them.
class Binder {
 public:
  Binder(const QuantConfig& q, const Checkpoint& ckpt, ModelWeights* w) : q_(q), ckpt_(ckpt), w_(w) {
    for (const auto& p : q.ignore_regex) {
      try {
        ignore_re_.emplace_back(p);
      } catch (const std::exception&) {
        bad_regex_ = p;
      }
    }
  }

  const std::vector<std::string>& companion_names() const { return companions_; }

  Status bind_matrix(const Slot& s) {
    if (!bad_regex_.empty()) {
      return format_error("config.json: quantization_config.ignore pattern " + quote_for_message(bad_regex_) + " is not a valid regex");
    }
    const std::string module = module_of(s.name);
    Quant want = Quant::None;
    switch (q_.scheme) {
      case QuantConfig::Scheme::None: break;
      case QuantConfig::Scheme::Fp8Channel:
        if (s.kind != MatrixKind::Plain && !ignored(module)) want = Quant::Fp8Channel;
        break;
      case QuantConfig::Scheme::Fp8Block:
        // DeepSeek-style checkpoints mark FP8 modules only by their F8_E4M3 weight (no ignore list).
        if (s.kind != MatrixKind::Plain && !ignored(module)) {
          const TensorInfo* t = ckpt_.find(s.name);
          if (t && t->dtype == DType::F8_E4M3) want = Quant::Fp8Block;
        }
        break;
      case QuantConfig::Scheme::Mxfp4Experts:
        if (s.kind == MatrixKind::RoutedExpert) want = Quant::Mxfp4;
        break;
    }
    if (want == Quant::Mxfp4) return bind_mxfp4(s, module);
    const TensorInfo* t = ckpt_.find(s.name);
    if (!t) {
      if (s.optional) return Status::ok();
      return format_error(ckpt_.dir() + ": missing tensor " + quote_for_message(s.name) + " (required by config.json)");
    }
    if (t->shape != s.shape) {
      return format_error(t->file + ": tensor " + quote_for_message(s.name) + " has shape " + shape_str(t->shape) + ", expected " +
                          shape_str(s.shape) + " from config.json");
    }
    Matrix m{t->data, t->dtype, s.shape[0], s.shape[1]};
    if (want == Quant::None) {
      Status dtype_ok = check_dtype(*t);
      if (!dtype_ok.is_ok()) return Status::error(dtype_ok.code(), t->file + ": " + dtype_ok.message());
    } else {
      if (t->dtype != DType::F8_E4M3) {
        return format_error(t->file + ": tensor " + quote_for_message(s.name) + " is " + dtype_name(t->dtype) +
                            ", but quantization_config makes module " + quote_for_message(module) +
                            " FP8 (F8_E4M3); list it in \"ignore\" to keep it unquantized");
      }
      m.quant = want;
      GLM_TRY(bind_fp8_scales(s, module, &m));
    }
    *s.matrix = m;
    w_->mapped_bytes += t->nbytes;
    return Status::ok();
  }

 private:
  bool ignored(const std::string& module) const {
    for (const auto& m : q_.ignore)
      if (m == module) return true;
    for (const auto& re : ignore_re_)
      if (std::regex_match(module, re)) return true;
    return false;
  }

  // A companion tensor that must exist with this dtype set and shape.
  Status companion(const std::string& name, std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape,
                   const std::string& why, const TensorInfo** out) {
    companions_.push_back(name);
    const TensorInfo* t = ckpt_.find(name);
    if (!t) return format_error(ckpt_.dir() + ": missing tensor " + quote_for_message(name) + " (" + why + ")");
    bool dtype_ok = false;
    std::string allowed;
    for (DType d : dtypes) {
      dtype_ok = dtype_ok || t->dtype == d;
      allowed += (allowed.empty() ? "" : " or ") + std::string(dtype_name(d));
    }
    if (!dtype_ok) {
      return format_error(t->file + ": tensor " + quote_for_message(name) + " is " + dtype_name(t->dtype) + ", expected " + allowed);
    }
    if (t->shape != shape) {
      return format_error(t->file + ": tensor " + quote_for_message(name) + " has shape " + shape_str(t->shape) + ", expected " +
                          shape_str(shape) + " (" + why + ")");
    }
    *out = t;
    return Status::ok();
  }

  Status bind_fp8_scales(const Slot& s, const std::string& module, Matrix* m) {
    const TensorInfo* t = nullptr;
    if (m->quant == Quant::Fp8Channel) {
      GLM_TRY(companion(module + ".weight_scale", {DType::F32, DType::BF16, DType::F16}, {m->rows, 1},
                        "per-output-channel scale of the FP8 weight " + s.name, &t));
    } else {
      GLM_TRY(companion(module + ".weight_scale_inv", {DType::F32}, {m->block_rows(), m->block_cols()},
                        "128x128 block scales of the FP8 weight " + s.name, &t));
    }
    // Widened to fp32 once (a few KB per matrix) so the kernels read one scale type; every value is
    // checked here because a NaN or negative scale would silently poison a whole row or block.
    std::vector<float>& store = w_->scale_storage.emplace_back();
    widen(*t, &store);
    for (size_t i = 0; i < store.size(); ++i) {
      if (!std::isfinite(store[i]) || store[i] < 0.0f) {
        return format_error(t->file + ": tensor " + quote_for_message(t->name) + " holds an invalid scale " +
                            std::to_string(store[i]) + " at index " + std::to_string(i) + " (scales must be finite and >= 0)");
      }
    }
    m->scales = store.data();
    w_->owned_bytes += store.size() * sizeof(float);
    return Status::ok();
  }

  Status bind_mxfp4(const Slot& s, const std::string& module) {
    const int64_t rows = s.shape[0], cols = s.shape[1];
    const int64_t groups = (cols + kMxfp4Group - 1) / kMxfp4Group;
    if (const TensorInfo* plain = ckpt_.find(s.name)) {
      return format_error(plain->file + ": tensor " + quote_for_message(s.name) +
                          " is present, but quantization_config (mxfp4) stores routed experts as " +
                          quote_for_message(module + ".weight_blocks") + " / " + quote_for_message(module + ".weight_scales"));
    }
    const TensorInfo *blocks = nullptr, *scales = nullptr;
    GLM_TRY(companion(module + ".weight_blocks", {DType::U8}, {rows, groups, 16},
                      "MXFP4 codes of " + s.name + ": [out, ceil(in/32), 16]", &blocks));
    GLM_TRY(companion(module + ".weight_scales", {DType::U8}, {rows, groups},
                      "MXFP4 E8M0 scales of " + s.name + ": [out, ceil(in/32)]", &scales));
    if (const void* nan = std::memchr(scales->data, 0xff, size_t(scales->nbytes))) {
      const size_t at = size_t(static_cast<const uint8_t*>(nan) - scales->data);
      return format_error(scales->file + ": tensor " + quote_for_message(scales->name) + " holds the E8M0 NaN code 0xFF at index " +
                          std::to_string(at));
    }
    Matrix m{blocks->data, DType::U8, rows, cols, Quant::Mxfp4, scales->data};
    *s.matrix = m;
    w_->mapped_bytes += blocks->nbytes + scales->nbytes;
    return Status::ok();
  }

  const QuantConfig& q_;
  const Checkpoint& ckpt_;
  ModelWeights* w_;
  std::vector<std::regex> ignore_re_;
  std::string bad_regex_;
  std::vector<std::string> companions_;
};

}  // namespace

Status bind_weights(const ModelConfig& c, const Checkpoint& ckpt, ModelWeights* out) {
  ModelWeights w;
  SlotTable table(c);
  const int64_t H = c.hidden_size, V = c.vocab_size;
  table.matrix("model.embed_tokens.weight", V, H, &w.embed_tokens, false, MatrixKind::Plain);
  w.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) table.layer(l, c.is_moe_layer(l), &w.layers[size_t(l)]);
  table.vec("model.norm.weight", H, &w.final_norm);
  table.matrix("lm_head.weight", V, H, &w.lm_head);
  if (c.num_nextn_predict_layers == 1) {
    // The MTP layer sits after the trunk and is always MoE (spec §3.1). Its own copies of the
    // embedding and output head are absent in some releases (GLM-4.6), hence optional.
    w.mtp = std::make_unique<MtpWeights>();
    const int64_t n = c.num_hidden_layers;
    const std::string p = "model.layers." + std::to_string(n);
    table.layer(n, true, &w.mtp->layer);
    table.matrix(p + ".eh_proj.weight", H, 2 * H, &w.mtp->eh_proj);
    table.vec(p + ".enorm.weight", H, &w.mtp->enorm);
    table.vec(p + ".hnorm.weight", H, &w.mtp->hnorm);
    table.vec(p + ".shared_head.norm.weight", H, &w.mtp->shared_head_norm);
    table.matrix(p + ".shared_head.head.weight", V, H, &w.mtp->shared_head_head, true);
    table.matrix(p + ".embed_tokens.weight", V, H, &w.mtp->embed_tokens, true, MatrixKind::Plain);
  }

  Binder binder(c.quant, ckpt, &w);
  std::unordered_set<std::string_view> expected;
  for (Slot& s : table.slots()) {
    expected.insert(s.name);
    if (s.matrix) {
      GLM_TRY(binder.bind_matrix(s));
      continue;
    }
    const TensorInfo* t = ckpt.find(s.name);
    if (!t) {
      if (s.optional) continue;
      return format_error(ckpt.dir() + ": missing tensor " + quote_for_message(s.name) + " (required by config.json)");
    }
    if (t->shape != s.shape) {
      return format_error(t->file + ": tensor " + quote_for_message(s.name) + " has shape " + shape_str(t->shape) + ", expected " +
                          shape_str(s.shape) + " from config.json");
    }
    Status dtype_ok = check_dtype(*t);
    if (!dtype_ok.is_ok()) return Status::error(dtype_ok.code(), t->file + ": " + dtype_ok.message());
    widen(*t, s.vector);
    w.owned_bytes += t->numel * sizeof(float);
  }
  for (const std::string& name : binder.companion_names()) expected.insert(name);
  // Tensors the config does not explain mean the config and the weights disagree (e.g. an MTP layer
  // with num_nextn_predict_layers = 0, or more experts than n_routed_experts): refuse rather than guess.
  for (const TensorInfo* t : ckpt.tensors()) {
    if (!expected.count(t->name)) {
      return format_error("unexpected tensor " + quote_for_message(t->name) + " in " + t->file +
                          " (not part of the model config.json describes)");
    }
  }
  *out = std::move(w);
  return Status::ok();
}

namespace {

// One walk for both constnesses (W is ModelWeights or const ModelWeights, F takes the matching Matrix&).
template <class W, class F>
void walk_matrices(W& w, const F& fn) {
  auto mlp = [&](auto& m) { fn(m.gate); fn(m.up); fn(m.down); };
  auto layer = [&](auto& L) {
    fn(L.attn.q); fn(L.attn.k); fn(L.attn.v); fn(L.attn.o);
    if (L.is_moe) {
      fn(L.moe.router);
      for (auto& e : L.moe.experts) mlp(e);
      mlp(L.moe.shared);
    } else {
      mlp(L.dense);
    }
  };
  fn(w.embed_tokens);
  for (auto& L : w.layers) layer(L);
  fn(w.lm_head);
  if (w.mtp) {
    layer(w.mtp->layer);
    fn(w.mtp->eh_proj);
    if (w.mtp->shared_head_head.data) fn(w.mtp->shared_head_head);
    if (w.mtp->embed_tokens.data) fn(w.mtp->embed_tokens);
  }
}

}  // namespace

void for_each_matrix(const ModelWeights& w, const std::function<void(const Matrix&)>& fn) { walk_matrices(w, fn); }
void for_each_matrix(ModelWeights& w, const std::function<void(Matrix&)>& fn) { walk_matrices(w, fn); }

}  // namespace glm
