// Per-layer weight structs the forward pass reads (DESIGN.md rule 2), bound from checkpoint tensors
// through one name table (weights.cc). Matrices point into the memory-mapped shards (never copied);
// small vectors (norms, biases, router bias) are widened to fp32 once at load.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/dtype.h"
#include "engine/matrix.h"
#include "engine/status.h"

namespace glm {

class Checkpoint;

struct MlpWeights {  // SwiGLU: down(silu(gate(x)) * up(x))
  Matrix gate, up, down;
};

struct AttentionWeights {
  Matrix q, k, v, o;                        // q/k/v/o_proj
  std::vector<float> q_bias, k_bias, v_bias;  // empty when !attention_bias
  std::vector<float> q_norm, k_norm;        // [head_dim]; empty when !use_qk_norm
};

struct MoeWeights {
  Matrix router;                            // mlp.gate.weight [E, H], run in fp32
  std::vector<float> correction_bias;       // mlp.gate.e_score_correction_bias [E]; selection only
  std::vector<MlpWeights> experts;          // mlp.experts.{e}
  MlpWeights shared;                        // mlp.shared_experts
};

struct LayerWeights {
  std::vector<float> input_norm;            // input_layernorm
  AttentionWeights attn;                    // self_attn
  std::vector<float> post_attention_norm;   // post_attention_layernorm
  bool is_moe = false;
  MlpWeights dense;                         // mlp (dense layers)
  MoeWeights moe;                           // mlp (MoE layers)
};

// The MTP ("nextn") layer: loaded and validated now, run by speculative decoding later (spec §3).
struct MtpWeights {
  LayerWeights layer;
  Matrix eh_proj;                           // [H, 2H]
  std::vector<float> enorm, hnorm, shared_head_norm;
  Matrix shared_head_head;                  // [V, H]; data == nullptr when absent
  Matrix embed_tokens;                      // [V, H]; data == nullptr when absent
};

struct ModelWeights {
  Matrix embed_tokens;                      // model.embed_tokens [V, H]
  std::vector<LayerWeights> layers;         // model.layers.0 .. N-1
  std::vector<float> final_norm;            // model.norm
  Matrix lm_head;                           // lm_head [V, H] (or the embedding when tied)
  std::unique_ptr<MtpWeights> mtp;          // model.layers.N.* when num_nextn_predict_layers == 1

  uint64_t mapped_bytes = 0;                // bytes of matrices served from the mapping
  uint64_t owned_bytes = 0;                 // bytes of fp32 vectors copied at load
  // fp32 copies of FP8 scales, pointed to by Matrix::scales (each vector's buffer never moves).
  std::vector<std::vector<float>> scale_storage;
};

// Binds every tensor the config implies, checking presence, shape and dtype; rejects tensors the
// config does not explain (an unexpected MTP layer, a stray expert) so a mismatched checkpoint is a
// clear error instead of silently wrong output.
Status bind_weights(const ModelConfig& cfg, const Checkpoint& ckpt, ModelWeights* out);

// Every matrix in the model (for warming pages / accounting), with its checkpoint name.
void for_each_matrix(const ModelWeights& w, const std::function<void(const Matrix&)>& fn);
void for_each_matrix(ModelWeights& w, const std::function<void(Matrix&)>& fn);

}  // namespace glm
