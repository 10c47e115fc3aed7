// The GLM-4.5 trunk forward pass (spec §2), written once against the Backend interface.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/weights.h"

namespace glm {

// Debug hook (DESIGN.md rule 10): called with each named intermediate ("attn_norm", "q", ...) of each
// layer (-1 for model-level tensors) as host fp32 [rows, cols].
using ActivationHook = std::function<void(const char* name, int64_t layer, const float* data, int64_t rows, int64_t cols)>;

// Runs one step: every row of `plan` through the trunk; writes the logits of plan.logit_rows to
// `logits` ([logit_rows.size(), vocab]). The page tables in the plan must already cover the new
// positions; the caller records them as computed after success. Polls `cancelled` between layers
// (ErrorCode::Aborted). With plan.greedy_tokens and `greedy_tokens`, only the
// argmax token of each logit row is written there (Backend::download_greedy; `logits` may stay unwritten);
// with plan.sample_requests, the chosen tokens and `sampled_logprobs` [logit rows] (download_sampled).
Status forward_step(Backend& backend, const ModelConfig& cfg, const ModelWeights& weights, const StepPlan& plan,
                    float* logits, const std::function<bool()>* cancelled, const ActivationHook* hook,
                    int32_t* greedy_tokens = nullptr, TokenLogprobs* sampled_logprobs = nullptr);

}  // namespace glm
