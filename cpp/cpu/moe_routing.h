// GLM-4.5's MoE router for one token (spec §2): fp32 sigmoid scores, the correction bias used only to
// choose, group-limited top-k (HF semantics: a group scores the sum of its two best biased scores;
// experts of dropped groups get 0.0, not -inf), weights from the unbiased scores, optional
// renormalisation (+1e-20) and the routed scaling factor. Ties go to the lowest index; a NaN never wins.
// The CPU backend runs it, and the CUDA router's test compares against it bit for bit.
#pragma once
#include <cstdint>

namespace glm::cpu {

struct RoutingParams {
  int64_t n_experts = 0;  // E <= kMaxExperts
  int64_t top_k = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1;
};

constexpr int64_t kMaxExperts = 1024;  // config validation caps n_routed_experts here

void route_token(const RoutingParams& p, const float* logits, const float* correction_bias, int32_t* experts,
                 float* weights);

}  // namespace glm::cpu
