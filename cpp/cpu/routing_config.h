// A model's router settings (config.json) as moe_routing's parameters: the one place both the CPU
// backend and calibration (which needs each token's experts) read them from.
#pragma once
#include "cpu/moe_routing.h"
#include "engine/config.h"

namespace glm::cpu {

inline RoutingParams routing_params(const ModelConfig& cfg) {
  RoutingParams p;
  p.n_experts = cfg.n_routed_experts;
  p.top_k = cfg.num_experts_per_tok;
  p.n_group = cfg.n_group;
  p.topk_group = cfg.topk_group;
  p.norm_topk_prob = cfg.norm_topk_prob;
  p.routed_scaling_factor = cfg.routed_scaling_factor;
  return p;
}

}  // namespace glm::cpu
