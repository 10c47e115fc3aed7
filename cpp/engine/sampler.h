// Token selection on the engine side (no per-token round trip to JS): penalties, then greedy or
// temperature with top-k / top-p / min-p filtering, from a seeded generator so a seed reproduces a
// generation; optionally the log-probabilities of the model's distribution.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/status.h"

namespace glm {

struct SamplingParams {
  double temperature = 0;         // 0 = greedy (argmax, ties to the lowest id)
  int64_t top_k = 0;              // 0 = off
  double top_p = 1;               // 1 = off
  double min_p = 0;               // 0 = off
  double repetition_penalty = 1;  // HF/CTRL style over prompt + generated tokens; 1 = off
  double presence_penalty = 0;    // OpenAI style over generated tokens: -= p once a token appeared
  double frequency_penalty = 0;   // OpenAI style over generated tokens: -= f * count
  int64_t top_logprobs = -1;      // -1 = no logprobs; n >= 0: chosen token's logprob + the n best
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

// Log-probabilities (log-softmax of the raw logits, before penalties and temperature, as OpenAI and
// vLLM report them) of the chosen token and of the most likely ones.
struct TokenLogprobs {
  float chosen = 0;
  std::vector<std::pair<int32_t, float>> top;  // best first, ties to the lower id
};

// The penalised logit of a token in the history: the repetition penalty (the token is in the context),
// then presence / frequency for its `generated` occurrences (0: prompt only). fp32 operations in this
// order, so cuda/sample_tokens.cu reproduces them bit for bit.
float penalize_logit(float logit, const SamplingParams& p, int32_t generated);

// The selection rule on (penalised) logits [vocab]: greedy at temperature 0; else temperature, top-k,
// top-p, min-p over the candidates sorted by (logit desc, id asc), and u in [0, 1) picks from the
// renormalised rest. The one definition of the rule: Sampler::sample uses it and the device sampler's
// test compares with it. Numerical when every logit is NaN or no candidate is finite.
Status choose_token(const float* logits, int64_t vocab, const SamplingParams& p, double u, int32_t* token,
                    std::vector<std::pair<float, int32_t>>* scratch = nullptr);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // Tokens already in the context (the prompt): repetition_penalty applies to them too.
  void set_context(const std::vector<int32_t>& tokens);
  // Chooses the next token from logits [vocab] and records it for the penalties. Numerical when
  // every logit is NaN or the filters leave no finite candidate.
  Status sample(const float* logits, int64_t vocab, int32_t* token, TokenLogprobs* logprobs = nullptr);

  // The pieces of sample() for a selection made elsewhere (the device sampler): the history as
  // distinct (token, generated count) pairs (count 0: prompt only), the step's u (one draw per step at
  // temperature > 0, none at 0, exactly as sample() draws), and recording the chosen token.
  std::vector<std::pair<int32_t, int32_t>> history() const;
  double draw_uniform() { return params_.temperature == 0 ? 0.0 : rng_.uniform(); }
  // The scheduler's draw for the token at sequence position `position`: a counter-based value keyed by
  // (seed, position) instead of the next in a stream, so a verification step that samples several
  // positions at once (speculative decoding) draws exactly what one-token steps would (0 at temperature 0).
  double uniform_at(int64_t position) const { return params_.temperature == 0 ? 0.0 : counter_uniform(params_.seed, position); }
  // history() as if `extra` tokens (drafts being verified) had been generated after the recorded ones.
  std::vector<std::pair<int32_t, int32_t>> history_with(const int32_t* extra, size_t n) const;
  static double counter_uniform(uint64_t seed, int64_t position);
  void record(int32_t token) {
    context_.insert(token);
    ++counts_[token];
  }
  const SamplingParams& params() const { return params_; }

 private:
  const float* apply_penalties(const float* logits, int64_t vocab);
  SamplingParams params_;
  Rng rng_;
  std::unordered_set<int32_t> context_;           // prompt + generated (repetition penalty)
  std::unordered_map<int32_t, int32_t> counts_;   // generated only (presence / frequency)
  std::vector<float> work_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// One logit row's selection handed to a backend (Backend::download_sampled) instead of its logits: the
// generation's params, the step's u (Sampler::draw_uniform, drawn before the step) and the penalties'
// history (Sampler::history; may be empty when no penalty is on).
struct SampleRequest {
  SamplingParams params;
  double u = 0;
  std::vector<std::pair<int32_t, int32_t>> history;
  // Constrained decoding: the tokens a grammar allows (bit id % 32 of word id / 32; null: every
  // token). Owned by the generation, valid for the step.
  const uint32_t* allowed = nullptr;
};

// Constrained decoding's mask on a logit row: tokens whose bit is clear become NaN, which every
// selection rule skips (argmax, the candidate list, the device sampler). Returns how many stay.
int64_t apply_token_mask(float* logits, int64_t vocab, const uint32_t* allowed);
// Sampler::sample's selection from a request (penalties from the history, the grammar's mask, choose_token
// with u, logprobs of the raw logits when params.top_logprobs >= 0), without the Sampler: the host side of
// Backend::download_sampled. `work` holds the penalised copy.
Status sample_request(const float* logits, int64_t vocab, const SampleRequest& r, int32_t* token, TokenLogprobs* logprobs,
                      std::vector<float>* work = nullptr);

// argmax with ties to the lowest index; NaN never wins; -1 when every value is NaN.
int32_t argmax_token(const float* logits, int64_t vocab);

// Fills `out` from raw logits for `token`; top_n best alternatives.
void compute_logprobs(const float* logits, int64_t vocab, int32_t token, int64_t top_n, TokenLogprobs* out);

}  // namespace glm
