// Token selection on the engine side (no per-token round trip to JS): greedy, or temperature with
// top-k / top-p / min-p filtering, from a seeded generator so a seed reproduces a generation.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/status.h"

namespace glm {

struct SamplingParams {
  double temperature = 0;  // 0 = greedy (argmax, ties to the lowest id)
  int64_t top_k = 0;       // 0 = off
  double top_p = 1;        // 1 = off
  double min_p = 0;        // 0 = off
  uint64_t seed = 0;
};

// xoshiro256** seeded through splitmix64: small, fast, reproducible across platforms.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // Chooses the next token from logits [vocab]. Numerical when every logit is NaN / the filters leave
  // no finite candidate.
  Status sample(const float* logits, int64_t vocab, int32_t* token);

 private:
  SamplingParams params_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// argmax with ties to the lowest index; NaN never wins; -1 when nothing is finite or +inf.
int32_t argmax_token(const float* logits, int64_t vocab);

}  // namespace glm
