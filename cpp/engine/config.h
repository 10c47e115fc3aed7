// The model as data (DESIGN.md rule 1): every config.json value the engine uses, validated by one
// function, with no fallback to library defaults (spec §1: HF class defaults differ from the real
// checkpoints, e.g. rope_theta and attention_bias).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"

namespace glm {

class Checkpoint;
class JsonValue;

// How the checkpoint's weights are stored (config.json "quantization_config"; spec §5, §10). Exactly
// these schemes are accepted; anything else is ErrorCode::UnsupportedFormat naming what was found.
struct QuantConfig {
  enum class Scheme : uint8_t {
    None,          // no quantization_config: every weight F32/BF16/F16
    Fp8Channel,    // compressed-tensors float-quantized, weights strategy "channel": <m>.weight F8_E4M3 +
                   // <m>.weight_scale [out, 1]; every Linear not in `ignore` is FP8 (official GLM-4.5-FP8)
    Fp8Block,      // quant_method "fp8", weight_block_size [128, 128]: <m>.weight F8_E4M3 +
                   // <m>.weight_scale_inv [ceil(out/128), ceil(in/128)] F32 (DeepSeek-V3 style); a Linear
                   // is FP8 where its weight is F8_E4M3, never for modules_to_not_convert
    Mxfp4Experts,  // glm-node's own: routed experts as <m>.weight_blocks / <m>.weight_scales (README)
  };
  Scheme scheme = Scheme::None;
  std::vector<std::string> ignore;        // module names left unquantized (ignore / modules_to_not_convert)
  std::vector<std::string> ignore_regex;  // compressed-tensors "re:<pattern>" entries, pattern only
};

struct ModelConfig {
  int64_t hidden_size = 0;              // H: residual stream width
  int64_t num_hidden_layers = 0;        // trunk layers; the MTP layer (index N) is extra
  int64_t num_attention_heads = 0;      // query heads
  int64_t num_key_value_heads = 0;      // K/V heads (GQA: each shared by heads/kv_heads query heads)
  int64_t head_dim = 0;                 // explicit; never hidden/heads (GLM-4.5: 5120/96 is not an integer)
  double partial_rotary_factor = 0;     // fraction of each head rotated by RoPE (0.5)
  int64_t rotary_dim = 0;               // int(head_dim * partial_rotary_factor), even
  double rope_theta = 0;                // RoPE base (1e6 in the real checkpoints)
  double rms_norm_eps = 0;              // epsilon of every RMSNorm (incl. qk-norm)
  int64_t vocab_size = 0;               // embedding / lm_head rows
  int64_t intermediate_size = 0;        // dense SwiGLU width (leading layers)
  int64_t moe_intermediate_size = 0;    // routed expert SwiGLU width
  int64_t n_routed_experts = 0;         // E
  int64_t n_shared_experts = 0;         // shared expert width = moe_intermediate_size * n_shared_experts
  int64_t num_experts_per_tok = 0;      // top-k
  int64_t n_group = 0;                  // expert groups for group-limited routing
  int64_t topk_group = 0;               // groups kept per token
  double routed_scaling_factor = 0;     // multiplies routed weights (2.5 GLM-4.5, 1.0 Air)
  bool norm_topk_prob = false;          // renormalise the selected weights to sum 1
  int64_t first_k_dense_replace = 0;    // layers [0, k) are dense, the rest MoE
  bool use_qk_norm = false;             // per-head RMSNorm of q and k after bias, before RoPE
  bool attention_bias = false;          // q/k/v projections carry a bias (o_proj never does)
  bool tie_word_embeddings = false;     // lm_head shares the embedding (false for GLM-4.5)
  int64_t max_position_embeddings = 0;  // longest context the model was trained for
  int64_t num_nextn_predict_layers = 0; // MTP layers stored after the trunk (0 or 1)
  std::vector<int64_t> eos_token_ids;   // generation stops on any of these
  int64_t pad_token_id = -1;            // -1 when absent
  std::string torch_dtype;              // informational: the checkpoint's nominal dtype
  QuantConfig quant;                    // weight storage scheme (None for plain checkpoints)

  bool is_moe_layer(int64_t layer) const { return layer >= first_k_dense_replace; }
  int64_t q_width() const { return num_attention_heads * head_dim; }
  int64_t kv_width() const { return num_key_value_heads * head_dim; }
};

// Validates every field and their consistency; errors name the key (ErrorCode::ModelFormat), or
// ErrorCode::UnsupportedFormat for a well-formed config of another architecture.
Status parse_model_config(const JsonValue& root, ModelConfig* out);
// Validates a "quantization_config" object (strict: unknown methods or options are UnsupportedFormat).
Status parse_quantization_config(const JsonValue& q, QuantConfig* out);
// Reads <checkpoint dir>/config.json (confined to the folder like the shards) and validates it.
Status load_model_config(const Checkpoint& ckpt, ModelConfig* out);

}  // namespace glm
