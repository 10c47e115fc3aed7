// moe_route against the CPU backend's router (cpp/cpu/moe_routing.cc, linked into this test): ids must
// match exactly and weights bit for bit (the kernel does the same fp32 / double operations in the same
// order). Logits and biases come from small value sets, so many
// scores tie and the lowest-index rule decides; some configurations make masked groups' 0.0 choices win.
#include <cstring>
#include <functional>
#include <limits>

#include "cpu/moe_routing.h"
#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::MoeRouteArgs;
using glm::cuda::Stream;

namespace {

// The CPU backend's router (cpp/cpu/moe_routing.cc), the reference this kernel must match exactly.
void cpu_route(const MoeRouteArgs& a, const float* logits, const std::vector<float>& bias, int32_t* experts, float* weights) {
  glm::cpu::RoutingParams p;
  p.n_experts = a.n_experts;
  p.top_k = a.top_k;
  p.n_group = a.n_group;
  p.topk_group = a.topk_group;
  p.norm_topk_prob = a.norm_topk_prob;
  p.routed_scaling_factor = a.routed_scaling_factor;
  glm::cpu::route_token(p, logits, bias.data(), experts, weights);
}

void check_config(std::mt19937& rng, MoeRouteArgs a, bool all_seeds, bool with_nan) {
  const int64_t T = a.n_tokens, E = a.n_experts, k = a.top_k;
  // Logits on a grid of quarter steps (ties), occasionally continuous; biases from 3 values.
  std::uniform_int_distribution<int> grid(-8, 8), pick(0, 9);
  std::uniform_real_distribution<float> cont(-4.0f, 4.0f);
  std::vector<float> logits(size_t(T * E));
  std::vector<float> bias(static_cast<size_t>(E));
  for (auto& v : logits) v = pick(rng) < 7 ? 0.25f * float(grid(rng)) : cont(rng);
  const float bias_set[3] = {0.0f, 0.03125f, -0.5f};
  for (auto& b : bias) b = bias_set[pick(rng) % 3];
  if (with_nan) logits[3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> ref_ids(size_t(T * k));
  std::vector<float> ref_w(size_t(T * k));
  for (int64_t t = 0; t < T; ++t) cpu_route(a, &logits[size_t(t * E)], bias, &ref_ids[size_t(t * k)], &ref_w[size_t(t * k)]);
  DeviceBuffer<float> d_logits(logits), d_bias(bias), d_w(size_t(T * k));
  DeviceBuffer<int32_t> d_ids(size_t(T * k));
  const std::string what = "moe_route E=" + std::to_string(E) + " k=" + std::to_string(k) + " groups=" + std::to_string(a.n_group) +
                           "/" + std::to_string(a.topk_group) + " T=" + std::to_string(T);
  auto run = [&](uint64_t) {
    d_ids.poison();
    d_w.poison();
    CHECK(glm::cuda::moe_route(Stream{}, d_ids.get(), d_w.get(), d_logits.get(), d_bias.get(), a).is_ok()) << what;
    if (!device_ok(what.c_str())) return;
    const auto ids = d_ids.download();
    const auto w = d_w.download();
    size_t bad = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      uint32_t gb, rb;
      std::memcpy(&gb, &w[i], 4);
      std::memcpy(&rb, &ref_w[i], 4);
      const bool same_w = gb == rb || (std::isnan(w[i]) && std::isnan(ref_w[i]));
      if (ids[i] != ref_ids[i] || !same_w) {
        if (bad < 5) CHECK(false) << what << ": token " << i / size_t(k) << " pick " << i % size_t(k) << " got " << ids[i] << " ("
                                  << w[i] << ") want " << ref_ids[i] << " (" << ref_w[i] << ")";
        ++bad;
      }
    }
  };
  if (all_seeds) for_each_seed(run);
  else run(0);
}

MoeRouteArgs make(int64_t T, int64_t E, int64_t k, int64_t groups, int64_t topk_group, bool norm, double scale) {
  MoeRouteArgs a;
  a.n_tokens = T;
  a.n_experts = E;
  a.top_k = k;
  a.n_group = groups;
  a.topk_group = topk_group;
  a.norm_topk_prob = norm;
  a.routed_scaling_factor = scale;
  return a;
}

}  // namespace

TEST(moe_route_matches_cpu_route_exactly) {
  std::mt19937 rng(601);
  check_config(rng, make(5, 128, 8, 1, 1, true, 1.0), true, false);     // GLM-4.5-Air
  check_config(rng, make(40, 160, 8, 1, 1, true, 2.5), false, true);   // GLM-4.5, a NaN logit
  check_config(rng, make(17, 256, 8, 8, 4, true, 2.5), true, false);    // DeepSeek-V3-style groups
  check_config(rng, make(6, 16, 6, 8, 2, false, 1.5), true, false);     // 4 unmasked experts for 6 picks: masked 0.0 wins
  check_config(rng, make(2, 1024, 8, 1, 1, true, 1.0), false, false);   // the largest E: 32 experts per lane
  check_config(rng, make(3, 7, 7, 1, 1, true, 1.0), true, false);       // every expert picked, E < 32
}

TEST(moe_route_rejects_bad_arguments) {
  DeviceBuffer<float> logits(64), w(64);
  DeviceBuffer<int32_t> ids(64);
  CHECK(!glm::cuda::moe_route(Stream{}, ids.get(), w.get(), logits.get(), nullptr, make(1, 16, 17, 1, 1, true, 1)).is_ok());
  CHECK(!glm::cuda::moe_route(Stream{}, ids.get(), w.get(), logits.get(), nullptr, make(1, 16, 4, 3, 1, true, 1)).is_ok());
  CHECK(!glm::cuda::moe_route(Stream{}, ids.get(), w.get(), logits.get(), nullptr, make(1, 16, 4, 4, 5, true, 1)).is_ok());
  CHECK(!glm::cuda::moe_route(Stream{}, ids.get(), w.get(), logits.get(), nullptr, make(1, 2048, 4, 1, 1, true, 1)).is_ok());
  CHECK(glm::cuda::moe_route(Stream{}, ids.get(), w.get(), logits.get(), nullptr, make(0, 16, 4, 1, 1, true, 1)).is_ok());
}
