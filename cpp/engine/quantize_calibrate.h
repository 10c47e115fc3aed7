// Activation statistics for calibrated quantization: runs a loaded (unquantized) model over calibration
// token sequences with the forward pass's activation hook (forward.h) and accumulates, for the input of
// every Linear the quantizer may touch, the per-input-channel sum of squared activations.
//
// The hook exposes the normed layer inputs ("attn_norm": q/k/v_proj, "ffn_norm": the MLP / experts and
// "attn_out": o_proj); the inputs of down_proj (act(gate)·up) and which tokens reach which expert are
// recomputed here from "ffn_norm" with the model's own weights, router and CPU kernels, so the forward
// pass needs no extra hook points. A routed expert's statistics come from the tokens routed to it; an
// expert that saw fewer than min_expert_tokens falls back to statistics over every token of the layer
// (its gate/up input is the layer's ffn_norm; its down input is the expert run on all tokens).
// The MTP layer is not run by the trunk: its modules get no statistics (quantized by weight error).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/status.h"

namespace glm {

class Model;

namespace quant {

struct ChannelStats {
  std::vector<double> sum_sq;  // Σ x_c² over the tokens seen
  std::vector<double> sum_xx;  // Σ x xᵀ [C, C] (row-major), when covariances are collected
  int64_t tokens = 0;
};

struct CalibrationStats {
  std::map<std::string, ChannelStats> inputs;          // input key ("model.layers.3.ffn_norm", ...) -> sums
  std::map<std::string, std::string> module_input;     // module ("model.layers.3.mlp.experts.5.down_proj") -> key
  std::map<std::string, int64_t> expert_tokens;        // routed expert module prefix -> tokens routed to it
  int64_t tokens = 0;                                  // calibration tokens run
  bool covariance = false;                             // whether sum_xx was collected
};

struct CalibrationOptions {
  int threads = 0;                 // host threads for the recomputed products (0: hardware concurrency)
  int64_t min_expert_tokens = 16;  // below this a routed expert uses the all-token fallback
  int64_t batch_sequences = 8;     // sequences per evaluate call (one shared forward step per chunk)
  // Full input covariances (for GPTQ-style feedback) when all of them together take at most this many
  // bytes; 0: never. Their size is Σ C² over the inputs: fine for small models, far too much for every
  // expert of GLM-4.5, which then gets per-channel statistics only.
  uint64_t covariance_budget_bytes = uint64_t(2) << 30;
};

// Progress: sequences done of total.
using CalibrationProgress = std::function<void(int64_t done, int64_t total)>;

// The model must be unquantized (its matrices F32/BF16/F16): statistics describe the original weights'
// inputs. Sequences longer than the model's context are an error; cancel stops between batches.
Status collect_activation_stats(Model& model, const std::vector<std::vector<int32_t>>& sequences,
                                const CalibrationOptions& opts, const std::atomic<bool>* cancel,
                                const CalibrationProgress& progress, CalibrationStats* out);

}  // namespace quant
}  // namespace glm
