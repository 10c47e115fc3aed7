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
                    int32_t* greedy_tokens = nullptr, TokenLogprobs* sampled_logprobs = nullptr, Act* hidden = nullptr);

// One step of the MTP ("nextn") layer (spec §3): row r is the pair (h, x) of hidden state
// source[source_rows[r]] (the trunk's final-norm output, or the previous MTP step's output when
// chaining drafts) and token plan.tokens[r]: eh_proj(concat(enorm(embed(x)), hnorm(h))), the MTP
// decoder layer (KV layer num_hidden_layers; the plan sets first_key and rope_positions), then
// shared_head.norm, whose output is returned in *out_hidden. For plan.logit_rows the head's logits
// are written to `logits`, or with plan.greedy_tokens only their argmax to draft_tokens.
Status mtp_step(Backend& backend, const ModelConfig& cfg, const ModelWeights& weights, const StepPlan& plan, Act source,
                const std::vector<int64_t>& source_rows, float* logits, int32_t* draft_tokens,
                const std::function<bool()>* cancelled, const ActivationHook* hook, Act* out_hidden);

}  // namespace glm
