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
    GLM_TRY(parse_quantization_config(*q, &c.quant));
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

namespace {

Status unsupported_quant(const std::string& what) {
  return Status::error(ErrorCode::UnsupportedFormat,
                       "config.json: quantization_config: " + what +
                           " (supported: compressed-tensors float-quantized FP8 with per-channel weight scales; "
                           "quant_method \"fp8\" with weight_block_size [128, 128]; glm-node \"mxfp4\" experts)");
}

std::string json_text(const JsonValue* v) {
  if (!v) return "absent";
  switch (v->kind()) {
    case JsonValue::Kind::Null: return "null";
    case JsonValue::Kind::Bool: return v->as_bool() ? "true" : "false";
    case JsonValue::Kind::Number: return std::string(v->number_text());
    case JsonValue::Kind::String: return quote_for_message(v->as_string());
    default: return JsonValue::kind_name(v->kind());
  }
}

bool is_int(const JsonValue* v, int64_t want) {
  int64_t x;
  return v && v->is_number() && v->as_i64(&x) && x == want;
}
bool is_str(const JsonValue* v, const char* want) { return v && v->is_string() && v->as_string() == want; }
bool null_or_absent(const JsonValue* v) { return !v || v->is_null(); }

Status module_list(const JsonValue* v, const char* key, bool allow_regex, QuantConfig* q) {
  if (null_or_absent(v)) return Status::ok();
  if (!v->is_array() || v->size() > (1u << 20)) return format_error(std::string("config.json: quantization_config.") + key + " must be a list of module names");
  for (const JsonValue& e : v->as_array()) {
    if (!e.is_string() || e.as_string().size() > 1024) {
      return format_error(std::string("config.json: quantization_config.") + key + " must be a list of module names");
    }
    const std::string& s = e.as_string();
    if (s.rfind("re:", 0) == 0) {
      if (!allow_regex) return unsupported_quant(std::string(key) + " entry " + quote_for_message(s) + " is a pattern");
      q->ignore_regex.push_back(s.substr(3));
    } else {
      q->ignore.push_back(s);
    }
  }
  return Status::ok();
}

// compressed-tensors (the official GLM-4.5-FP8 layout, spec §5): FP8 E4M3 weights with one static scale per
// output channel. Activation quantization (dynamic per token) is accepted but not emulated: the CPU
// backend keeps activations in fp32, which is at least as accurate as W8A8.
Status parse_compressed_tensors(const JsonValue& q, QuantConfig* out) {
  if (const JsonValue* f = q.find("format"); !is_str(f, "float-quantized")) {
    return unsupported_quant("compressed-tensors format " + json_text(f) + " (only \"float-quantized\")");
  }
  if (const JsonValue* st = q.find("quantization_status"); st && !is_str(st, "compressed")) {
    return unsupported_quant("quantization_status " + json_text(st) + " (only \"compressed\")");
  }
  if (const JsonValue* kv = q.find("kv_cache_scheme"); !null_or_absent(kv)) return unsupported_quant("kv_cache_scheme is set");
  const JsonValue* groups = q.find("config_groups");
  if (!groups || !groups->is_object() || groups->size() == 0) return format_error("config.json: quantization_config.config_groups must be a non-empty object");
  for (const auto& [gname, g] : groups->as_object()) {
    const std::string where = "config_groups." + gname;
    const JsonValue* targets = g.find("targets");
    if (!targets || !targets->is_array() || targets->size() != 1 || !is_str(&targets->as_array()[0], "Linear")) {
      return unsupported_quant(where + ".targets must be [\"Linear\"]");
    }
    const JsonValue* w = g.find("weights");
    if (!w || !w->is_object()) return format_error("config.json: quantization_config." + where + ".weights must be an object");
    if (!is_int(w->find("num_bits"), 8) || !is_str(w->find("type"), "float")) {
      return unsupported_quant(where + ".weights num_bits " + json_text(w->find("num_bits")) + ", type " + json_text(w->find("type")) + " (only 8-bit float)");
    }
    if (const JsonValue* s = w->find("strategy"); !is_str(s, "channel")) {
      return unsupported_quant(where + ".weights.strategy " + json_text(s) + " (only \"channel\")");
    }
    if (const JsonValue* sym = w->find("symmetric"); sym && !(sym->is_bool() && sym->as_bool())) return unsupported_quant(where + ".weights are asymmetric");
    if (const JsonValue* dyn = w->find("dynamic"); dyn && !(dyn->is_bool() && !dyn->as_bool())) return unsupported_quant(where + ".weights.dynamic is not false");
    if (!null_or_absent(w->find("group_size")) || !null_or_absent(w->find("block_structure"))) {
      return unsupported_quant(where + ".weights has group_size/block_structure " + json_text(w->find("group_size")));
    }
    if (const JsonValue* a = g.find("input_activations"); !null_or_absent(a)) {
      if (!a->is_object() || !is_int(a->find("num_bits"), 8) || !is_str(a->find("type"), "float") ||
          !(a->find("dynamic") && a->find("dynamic")->is_bool() && a->find("dynamic")->as_bool())) {
        return unsupported_quant(where + ".input_activations other than dynamic 8-bit float (static activation scales)");
      }
    }
    if (!null_or_absent(g.find("output_activations"))) return unsupported_quant(where + ".output_activations is set");
  }
  out->scheme = QuantConfig::Scheme::Fp8Channel;
  return module_list(q.find("ignore"), "ignore", true, out);
}

Status parse_fp8_block(const JsonValue& q, QuantConfig* out) {
  const JsonValue* bs = q.find("weight_block_size");
  if (!bs || !bs->is_array() || bs->size() != 2 || !is_int(&bs->as_array()[0], 128) || !is_int(&bs->as_array()[1], 128)) {
    std::string found = "absent";
    if (bs && bs->is_array()) {
      found = "[";
      for (size_t i = 0; i < bs->size(); ++i) found += (i ? ", " : "") + json_text(&bs->as_array()[i]);
      found += "]";
    } else if (bs) {
      found = json_text(bs);
    }
    return unsupported_quant("fp8 weight_block_size " + found + " (only [128, 128]; per-tensor fp8 is not supported)");
  }
  if (const JsonValue* f = q.find("fmt"); f && !is_str(f, "e4m3")) return unsupported_quant("fp8 fmt " + json_text(f) + " (only \"e4m3\")");
  if (const JsonValue* a = q.find("activation_scheme"); a && !is_str(a, "dynamic")) {
    return unsupported_quant("fp8 activation_scheme " + json_text(a) + " (only \"dynamic\")");
  }
  out->scheme = QuantConfig::Scheme::Fp8Block;
  return module_list(q.find("modules_to_not_convert"), "modules_to_not_convert", false, out);
}

// glm-node's MXFP4 experts (README "Quantized checkpoints"): {"quant_method": "mxfp4",
// "format": "glm-node-mxfp4", "modules": ["mlp.experts"], "block_size": 32}. The "format" key keeps
// other tools' "mxfp4" (gpt-oss: fused gate_up_proj_blocks per layer) from being mistaken for ours.
Status parse_mxfp4(const JsonValue& q, QuantConfig* out) {
  if (const JsonValue* f = q.find("format"); !is_str(f, "glm-node-mxfp4")) {
    return unsupported_quant("mxfp4 format " + json_text(f) + " (only \"glm-node-mxfp4\": per-expert weight_blocks/weight_scales)");
  }
  if (const JsonValue* b = q.find("block_size"); !is_int(b, 32)) return unsupported_quant("mxfp4 block_size " + json_text(b) + " (only 32)");
  const JsonValue* m = q.find("modules");
  if (!m || !m->is_array() || m->size() != 1 || !is_str(&m->as_array()[0], "mlp.experts")) {
    return unsupported_quant("mxfp4 modules must be [\"mlp.experts\"] (routed experts only)");
  }
  out->scheme = QuantConfig::Scheme::Mxfp4Experts;
  return Status::ok();
}

}  // namespace

Status parse_quantization_config(const JsonValue& q, QuantConfig* out) {
  if (!q.is_object()) return format_error("config.json: \"quantization_config\" must be an object");
  QuantConfig c;
  const JsonValue* method = q.find("quant_method");
  if (is_str(method, "compressed-tensors")) {
    GLM_TRY(parse_compressed_tensors(q, &c));
  } else if (is_str(method, "fp8")) {
    GLM_TRY(parse_fp8_block(q, &c));
  } else if (is_str(method, "mxfp4")) {
    GLM_TRY(parse_mxfp4(q, &c));
  } else {
    return unsupported_quant("quant_method " + json_text(method));
  }
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
