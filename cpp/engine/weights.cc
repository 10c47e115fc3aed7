#include "engine/weights.h"

#include <cstring>
#include <unordered_set>

#include "engine/checkpoint.h"
#include "engine/json.h"

namespace glm {

namespace {

// One expected checkpoint tensor and the slot it fills. The whole model is described by a list of
// these (built from the config), so names live in one table-building function, not in the forward.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  Matrix* matrix = nullptr;           // 2-D weights, used in place from the mapping
  std::vector<float>* vector = nullptr;  // 1-D params, widened to fp32
  bool optional = false;
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class SlotTable {
 public:
  explicit SlotTable(const ModelConfig& c) : c_(c) {}

  void matrix(std::string name, int64_t rows, int64_t cols, Matrix* m, bool optional = false) {
    slots_.push_back({std::move(name), {rows, cols}, m, nullptr, optional});
  }
  void vec(std::string name, int64_t n, std::vector<float>* v) { slots_.push_back({std::move(name), {n}, nullptr, v, false}); }

  void mlp(const std::string& p, int64_t inter, MlpWeights* m) {
    matrix(p + ".gate_proj.weight", inter, c_.hidden_size, &m->gate);
    matrix(p + ".up_proj.weight", inter, c_.hidden_size, &m->up);
    matrix(p + ".down_proj.weight", c_.hidden_size, inter, &m->down);
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
    matrix(p + ".mlp.gate.weight", E, H, &L->moe.router);
    vec(p + ".mlp.gate.e_score_correction_bias", E, &L->moe.correction_bias);
    L->moe.experts.resize(size_t(E));
    for (int64_t e = 0; e < E; ++e) mlp(p + ".mlp.experts." + std::to_string(e), c_.moe_intermediate_size, &L->moe.experts[size_t(e)]);
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
                               ": FP8 weights need a quantization_config and are not supported yet");
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

}  // namespace

Status bind_weights(const ModelConfig& c, const Checkpoint& ckpt, ModelWeights* out) {
  ModelWeights w;
  SlotTable table(c);
  const int64_t H = c.hidden_size, V = c.vocab_size;
  table.matrix("model.embed_tokens.weight", V, H, &w.embed_tokens);
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
    table.matrix(p + ".embed_tokens.weight", V, H, &w.mtp->embed_tokens, true);
  }

  std::unordered_set<std::string_view> expected;
  for (Slot& s : table.slots()) {
    expected.insert(s.name);
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
    if (s.matrix) {
      *s.matrix = Matrix{t->data, t->dtype, s.shape[0], s.shape[1]};
      w.mapped_bytes += t->nbytes;
    } else {
      widen(*t, s.vector);
      w.owned_bytes += t->numel * sizeof(float);
    }
  }
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

void for_each_matrix(const ModelWeights& w, const std::function<void(const Matrix&)>& fn) {
  auto mlp = [&](const MlpWeights& m) { fn(m.gate); fn(m.up); fn(m.down); };
  auto layer = [&](const LayerWeights& L) {
    fn(L.attn.q); fn(L.attn.k); fn(L.attn.v); fn(L.attn.o);
    if (L.is_moe) {
      fn(L.moe.router);
      for (const auto& e : L.moe.experts) mlp(e);
      mlp(L.moe.shared);
    } else {
      mlp(L.dense);
    }
  };
  fn(w.embed_tokens);
  for (const auto& L : w.layers) layer(L);
  fn(w.lm_head);
  if (w.mtp) {
    layer(w.mtp->layer);
    fn(w.mtp->eh_proj);
    if (w.mtp->shared_head_head.data) fn(w.mtp->shared_head_head);
    if (w.mtp->embed_tokens.data) fn(w.mtp->embed_tokens);
  }
}

}  // namespace glm
