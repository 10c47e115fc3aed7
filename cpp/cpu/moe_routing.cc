#include "cpu/moe_routing.h"

#include <cmath>
#include <limits>

namespace glm::cpu {

void route_token(const RoutingParams& p, const float* logits, const float* bias, int32_t* experts, float* weights) {
  const int64_t E = p.n_experts, k = p.top_k;
  const int64_t groups = p.n_group, per_group = E / groups;
  float scores[kMaxExperts], choice[kMaxExperts];
  for (int64_t e = 0; e < E; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));  // sigmoid, fp32
    choice[e] = scores[e] + bias[e];            // the correction bias only steers selection
    if (std::isnan(choice[e])) choice[e] = -std::numeric_limits<float>::infinity();
  }
  // Picks the index of the largest not-yet-taken value; ties go to the lowest index.
  auto argmax_excluding = [](const float* v, int64_t n, const bool* taken) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      if (best < 0 || v[i] > v[best]) best = i;
    }
    return best;
  };
  if (groups > 1) {
    // Group-limited routing (HF): a group's score is the sum of its two best biased scores; experts
    // outside the best topk_group groups get a choice score of 0.0 (not -inf), as in HF.
    float group_score[kMaxExperts];
    for (int64_t g = 0; g < groups; ++g) {
      bool taken[kMaxExperts] = {};
      const float* c = choice + g * per_group;
      const int64_t a = argmax_excluding(c, per_group, taken);
      taken[a] = true;
      const int64_t b = argmax_excluding(c, per_group, taken);
      group_score[g] = c[a] + c[b];
    }
    bool group_taken[kMaxExperts] = {};
    for (int64_t j = 0; j < p.topk_group; ++j) group_taken[argmax_excluding(group_score, groups, group_taken)] = true;
    for (int64_t g = 0; g < groups; ++g) {
      if (group_taken[g]) continue;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) choice[e] = 0.0f;
    }
  }
  bool taken[kMaxExperts] = {};
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t e = argmax_excluding(choice, E, taken);
    taken[e] = true;
    experts[j] = int32_t(e);
    weights[j] = scores[e];  // combine with the unbiased sigmoid score
    sum += scores[e];
  }
  const double norm = p.norm_topk_prob ? 1.0 / (sum + 1e-20) : 1.0;
  for (int64_t j = 0; j < k; ++j) weights[j] = float(double(weights[j]) * norm * p.routed_scaling_factor);
}

}  // namespace glm::cpu
