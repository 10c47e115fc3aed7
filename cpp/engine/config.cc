#include "engine/config.h"

#include <cmath>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/json.h"

namespace glm {

namespace {

constexpr uint64_t kMaxConfigBytes = 16 << 20;  // a config.json is a few KB; anything huge is hostile

Status bad(const std::string& key, const std::string& why) {
  return format_error("config.json: \"" + key + "\" " + why);
}

class Reader {
 public:
  explicit Reader(const JsonValue& root) : root_(root) {}

  Status integer(const char* key, int64_t lo, int64_t hi, int64_t* out) const {
    const JsonValue* v = root_.find(key);
    if (!v) return bad(key, "is missing (required; library defaults are never used)");
    int64_t x;
    if (!v->is_number() || !v->as_i64(&x)) return bad(key, "must be an integer");
    if (x < lo || x > hi) {
      return bad(key, "is " + std::to_string(x) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = x;
    return Status::ok();
  }

  Status real(const char* key, double lo, double hi, bool lo_open, double* out) const {
    const JsonValue* v = root_.find(key);
    if (!v) return bad(key, "is missing (required; library defaults are never used)");
    if (!v->is_number()) return bad(key, "must be a number");
    const double x = v->as_double();
    if (!std::isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
      std::ostringstream os;
      os << "is " << x << ", outside " << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
      return bad(key, os.str());
    }
    *out = x;
    return Status::ok();
  }

  Status boolean(const char* key, bool* out) const {
    const JsonValue* v = root_.find(key);
    if (!v) return bad(key, "is missing (required; library defaults are never used)");
    if (!v->is_bool()) return bad(key, "must be true or false");
    *out = v->as_bool();
    return Status::ok();
  }

 private:
  const JsonValue& root_;
};

}  // namespace

Status parse_model_config(const JsonValue& root, ModelConfig* out) {
  if (!root.is_object()) return format_error("config.json: top level must be an object");
  ModelConfig c;

  const JsonValue* arch = root.find("architectures");
  if (!arch || !arch->is_array() || arch->size() != 1 || !arch->as_array()[0].is_string()) {
    return bad("architectures", "must be [\"Glm4MoeForCausalLM\"]");
  }
  if (arch->as_array()[0].as_string() != "Glm4MoeForCausalLM") {
    return Status::error(ErrorCode::UnsupportedFormat,
                         "config.json: architecture " + quote_for_message(arch->as_array()[0].as_string()) +
                             " is not supported (expected \"Glm4MoeForCausalLM\")");
  }
  const JsonValue* model_type = root.find("model_type");
  if (!model_type || !model_type->is_string() || model_type->as_string() != "glm4_moe") {
    return bad("model_type", "must be \"glm4_moe\"");
  }
  if (const JsonValue* q = root.find("quantization_config"); q && !q->is_null()) {
    return Status::error(ErrorCode::UnsupportedFormat,
                         "config.json: quantized checkpoints (quantization_config) are not supported yet");
  }
  if (const JsonValue* rs = root.find("rope_scaling"); rs && !rs->is_null()) {
    return Status::error(ErrorCode::UnsupportedFormat, "config.json: \"rope_scaling\" must be null (GLM-4.5 uses none)");
  }
  const JsonValue* act = root.find("hidden_act");
  if (!act || !act->is_string() || act->as_string() != "silu") return bad("hidden_act", "must be \"silu\"");

  Reader r(root);
  // Caps bound every later allocation and index computation; they are far above any released model.
  GLM_TRY(r.integer("hidden_size", 1, 1 << 16, &c.hidden_size));
  GLM_TRY(r.integer("num_hidden_layers", 1, 1024, &c.num_hidden_layers));
  GLM_TRY(r.integer("num_attention_heads", 1, 1024, &c.num_attention_heads));
  GLM_TRY(r.integer("num_key_value_heads", 1, 1024, &c.num_key_value_heads));
  GLM_TRY(r.integer("head_dim", 2, 1024, &c.head_dim));
  GLM_TRY(r.real("partial_rotary_factor", 0, 1, true, &c.partial_rotary_factor));
  GLM_TRY(r.real("rope_theta", 0, 1e12, true, &c.rope_theta));
  GLM_TRY(r.real("rms_norm_eps", 0, 1, true, &c.rms_norm_eps));
  GLM_TRY(r.integer("vocab_size", 1, 1 << 24, &c.vocab_size));
  GLM_TRY(r.integer("intermediate_size", 1, 1 << 20, &c.intermediate_size));
  GLM_TRY(r.integer("moe_intermediate_size", 1, 1 << 20, &c.moe_intermediate_size));
  GLM_TRY(r.integer("n_routed_experts", 1, 1024, &c.n_routed_experts));
  GLM_TRY(r.integer("n_shared_experts", 1, 64, &c.n_shared_experts));
  GLM_TRY(r.integer("num_experts_per_tok", 1, c.n_routed_experts, &c.num_experts_per_tok));
  GLM_TRY(r.integer("n_group", 1, c.n_routed_experts, &c.n_group));
  GLM_TRY(r.integer("topk_group", 1, c.n_group, &c.topk_group));
  GLM_TRY(r.real("routed_scaling_factor", 0, 1e6, true, &c.routed_scaling_factor));
  GLM_TRY(r.boolean("norm_topk_prob", &c.norm_topk_prob));
  GLM_TRY(r.integer("first_k_dense_replace", 0, c.num_hidden_layers, &c.first_k_dense_replace));
  GLM_TRY(r.boolean("use_qk_norm", &c.use_qk_norm));
  GLM_TRY(r.boolean("attention_bias", &c.attention_bias));
  GLM_TRY(r.boolean("tie_word_embeddings", &c.tie_word_embeddings));
  GLM_TRY(r.integer("max_position_embeddings", 1, int64_t(1) << 24, &c.max_position_embeddings));
  GLM_TRY(r.integer("num_nextn_predict_layers", 0, 1, &c.num_nextn_predict_layers));

  // Consistency between fields.
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return bad("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) +
                                          ") must divide num_attention_heads (" +
                                          std::to_string(c.num_attention_heads) + ")");
  }
  // HF: rotary_dim = int(head_dim * partial_rotary_factor); NeoX pairs need it even and non-zero.
  c.rotary_dim = int64_t(double(c.head_dim) * c.partial_rotary_factor);
  if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim) {
    return bad("partial_rotary_factor", "gives rotary dim " + std::to_string(c.rotary_dim) +
                                            " for head_dim " + std::to_string(c.head_dim) +
                                            " (must be even, >= 2 and <= head_dim)");
  }
  if (c.n_routed_experts % c.n_group != 0) {
    return bad("n_group", "(" + std::to_string(c.n_group) + ") must divide n_routed_experts (" +
                              std::to_string(c.n_routed_experts) + ")");
  }
  if (c.n_group > 1 && c.n_routed_experts / c.n_group < 2) {
    return bad("n_group", "leaves groups of one expert (group scores sum each group's top two)");
  }
  if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group)) {
    return bad("num_experts_per_tok", "exceeds the experts in topk_group groups");
  }
  if (c.tie_word_embeddings) {
    return Status::error(ErrorCode::UnsupportedFormat,
                         "config.json: tie_word_embeddings=true is not a GLM-4.5 layout (lm_head is untied)");
  }

  const JsonValue* eos = root.find("eos_token_id");
  if (!eos) return bad("eos_token_id", "is missing");
  auto add_eos = [&](const JsonValue& v) -> Status {
    int64_t id;
    if (!v.as_i64(&id) || id < 0 || id >= c.vocab_size) {
      return bad("eos_token_id", "must hold token ids below vocab_size (" + std::to_string(c.vocab_size) + ")");
    }
    c.eos_token_ids.push_back(id);
    return Status::ok();
  };
  if (eos->is_array()) {
    if (eos->size() == 0 || eos->size() > 64) return bad("eos_token_id", "must list 1 to 64 ids");
    for (const auto& v : eos->as_array()) GLM_TRY(add_eos(v));
  } else {
    GLM_TRY(add_eos(*eos));
  }
  if (const JsonValue* pad = root.find("pad_token_id"); pad && !pad->is_null()) {
    if (!pad->as_i64(&c.pad_token_id) || c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) {
      return bad("pad_token_id", "must be a token id below vocab_size");
    }
  }
  if (const JsonValue* dt = root.find("torch_dtype"); dt && dt->is_string()) c.torch_dtype = dt->as_string();

  *out = std::move(c);
  return Status::ok();
}

Status load_model_config(const Checkpoint& ckpt, ModelConfig* out) {
  std::string text;
  // Read through the checkpoint so config.json gets the same folder confinement as the shards.
  Status read = ckpt.read_text_file("config.json", kMaxConfigBytes, &text);
  if (!read.is_ok()) {
    if (read.code() == ErrorCode::ModelLoad && read.message().find("does not exist") != std::string::npos) {
      return format_error(ckpt.dir() + ": config.json is missing");
    }
    return read;
  }
  JsonValue root;
  GLM_TRY(parse_json(text, &root, ckpt.dir() + "/config.json"));
  Status st = parse_model_config(root, out);
  if (!st.is_ok()) return Status::error(st.code(), ckpt.dir() + "/" + st.message());  // "<dir>/config.json: ..."
  return st;
}

}  // namespace glm
