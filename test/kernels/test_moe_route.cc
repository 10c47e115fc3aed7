// moe_route against CpuBackend::route (cpp/cpu/cpu_backend.cc), ported line for line below with the
// config fields as parameters: ids must match exactly and weights bit for bit (the kernel does the same
// fp32 / double operations in the same order). Logits and biases come from small value sets, so many
// scores tie and the lowest-index rule decides; some configurations make masked groups' 0.0 choices win.
#include <cstring>
#include <functional>
#include <limits>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::MoeRouteArgs;
using glm::cuda::Stream;

namespace {

// CpuBackend::route, verbatim but for cfg_ -> a.
void cpu_route(const MoeRouteArgs& a, const float* logits, const std::vector<float>& bias, int32_t* experts, float* weights) {
  const int64_t E = a.n_experts, k = a.top_k;
  const int64_t groups = a.n_group, per_group = E / groups;
  float scores[1024], choice[1024];
  for (int64_t e = 0; e < E; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    choice[e] = scores[e] + bias[size_t(e)];
    if (std::isnan(choice[e])) choice[e] = -std::numeric_limits<float>::infinity();
  }
  auto argmax_excluding = [](const float* v, int64_t n, const bool* taken) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      if (best < 0 || v[i] > v[best]) best = i;
    }
    return best;
  };
  if (groups > 1) {
    float group_score[1024];
    for (int64_t g = 0; g < groups; ++g) {
      bool taken[1024] = {};
      const float* c = choice + g * per_group;
      const int64_t x = argmax_excluding(c, per_group, taken);
      taken[x] = true;
      const int64_t y = argmax_excluding(c, per_group, taken);
      group_score[g] = c[x] + c[y];
    }
    bool group_taken[1024] = {};
    for (int64_t j = 0; j < a.topk_group; ++j) group_taken[argmax_excluding(group_score, groups, group_taken)] = true;
    for (int64_t g = 0; g < groups; ++g) {
      if (group_taken[g]) continue;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) choice[e] = 0.0f;
    }
  }
  bool taken[1024] = {};
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t e = argmax_excluding(choice, E, taken);
    taken[e] = true;
    experts[j] = int32_t(e);
    weights[j] = scores[e];
    sum += scores[e];
  }
  const double norm = a.norm_topk_prob ? 1.0 / (sum + 1e-20) : 1.0;
  for (int64_t j = 0; j < k; ++j) weights[j] = float(double(weights[j]) * norm * a.routed_scaling_factor);
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
