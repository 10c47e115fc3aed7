// The engine-side sampler against exact expectations: greedy ties, NaN handling, and the sampled
// distribution after temperature / top-k / top-p / min-p, checked with a fixed seed and large counts.
#include <cmath>
#include <vector>

#include "check.h"
#include "engine/sampler.h"

using glm::SamplingParams;
using glm::Sampler;

namespace {

std::vector<double> frequencies(const std::vector<float>& logits, SamplingParams p, int draws) {
  Sampler s(p);
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) {
    int32_t t = -1;
    if (!s.sample(logits.data(), int64_t(logits.size()), &t).is_ok()) return {};
    f[size_t(t)] += 1.0 / draws;
  }
  return f;
}

// Frequencies within 5 standard errors of the expected probabilities (a false failure has odds
// below 1e-6 per token at these counts).
bool close_to(const std::vector<double>& f, const std::vector<double>& p, int draws) {
  if (f.size() != p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    const double sigma = std::sqrt(p[i] * (1 - p[i]) / draws) + 1e-12;
    if (std::abs(f[i] - p[i]) > 5 * sigma) return false;
  }
  return true;
}

}  // namespace

TEST(sampler_greedy_takes_lowest_id_on_ties_and_skips_nan) {
  std::vector<float> l = {1.0f, 3.0f, NAN, 3.0f, -2.0f};
  int32_t t = -1;
  Sampler s(SamplingParams{});
  CHECK(s.sample(l.data(), 5, &t).is_ok());
  CHECK(t == 1) << "got " << t;
  CHECK(glm::argmax_token(l.data(), 5) == 1);
  std::vector<float> all_nan = {NAN, NAN};
  CHECK(s.sample(all_nan.data(), 2, &t).code() == glm::ErrorCode::Numerical);
  SamplingParams hot;
  hot.temperature = 1;
  Sampler s2(hot);
  CHECK(s2.sample(all_nan.data(), 2, &t).code() == glm::ErrorCode::Numerical);
}

TEST(sampler_matches_softmax_with_temperature) {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f, 0.5f};
  SamplingParams p;
  p.temperature = 2.0;
  p.seed = 1234;
  const int n = 200000;
  std::vector<double> expect(4);
  double z = 0;
  for (size_t i = 0; i < 4; ++i) z += expect[i] = std::exp(l[i] / 2.0);
  for (auto& e : expect) e /= z;
  CHECK(close_to(frequencies(l, p, n), expect, n));
}

TEST(sampler_top_k_top_p_min_p_truncate_then_renormalise) {
  // probabilities at T=1: proportional to e^{3,2,1,0} = 0.644, 0.237, 0.087, 0.032
  const std::vector<float> l = {3.0f, 2.0f, 1.0f, 0.0f};
  const int n = 200000;
  std::vector<double> w(4);
  for (size_t i = 0; i < 4; ++i) w[i] = std::exp(double(l[i]));
  auto renorm = [&](size_t keep) {
    std::vector<double> p(4, 0.0);
    double z = 0;
    for (size_t i = 0; i < keep; ++i) z += w[i];
    for (size_t i = 0; i < keep; ++i) p[i] = w[i] / z;
    return p;
  };
  SamplingParams p;
  p.temperature = 1;
  p.seed = 99;
  p.top_k = 2;
  CHECK(close_to(frequencies(l, p, n), renorm(2), n)) << "top_k";
  p.top_k = 0;
  p.top_p = 0.9;  // 0.644 + 0.237 = 0.881 < 0.9, so three tokens are kept
  CHECK(close_to(frequencies(l, p, n), renorm(3), n)) << "top_p";
  p.top_p = 1;
  p.min_p = 0.1;  // keeps p >= 0.0644: the first three
  CHECK(close_to(frequencies(l, p, n), renorm(3), n)) << "min_p";
  p.min_p = 0.5;  // keeps only the top token (0.237 < 0.322)
  CHECK(close_to(frequencies(l, p, n), renorm(1), n)) << "min_p 0.5";
}

TEST(sampler_same_seed_same_sequence) {
  const std::vector<float> l = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  SamplingParams p;
  p.temperature = 1;
  p.seed = 7;
  Sampler a(p), b(p);
  p.seed = 8;
  Sampler c(p);
  int same = 0, differ = 0;
  for (int i = 0; i < 200; ++i) {
    int32_t x, y, z;
    CHECK(a.sample(l.data(), 6, &x).is_ok());
    CHECK(b.sample(l.data(), 6, &y).is_ok());
    CHECK(c.sample(l.data(), 6, &z).is_ok());
    same += x == y;
    differ += x != z;
  }
  CHECK(same == 200);
  CHECK(differ > 50) << differ;
}

TEST(sampler_penalties_follow_their_definitions) {
  // Greedy picks make each penalty's effect exact and observable.
  const std::vector<float> l = {2.0f, 1.9f, -1.0f, -1.05f};
  int32_t t = -1;
  {  // repetition (CTRL/HF): a positive logit in the context is divided, a negative one multiplied
    SamplingParams p;
    p.repetition_penalty = 1.1;
    Sampler s(p);
    s.set_context({0});
    CHECK(s.sample(l.data(), 4, &t).is_ok());
    CHECK(t == 1) << "2.0/1.1 = 1.818 < 1.9, got " << t;
  }
  {  // negative logits get multiplied: -1.0 * 1.1 = -1.1 < -1.05
    std::vector<float> neg = {-1.0f, -1.05f};
    SamplingParams p;
    p.repetition_penalty = 1.1;
    Sampler s(p);
    s.set_context({0});
    CHECK(s.sample(neg.data(), 2, &t).is_ok());
    CHECK(t == 1) << t;
  }
  {  // presence: generated tokens lose a fixed amount once; the prompt does not count
    SamplingParams p;
    p.presence_penalty = 0.2;
    Sampler s(p);
    s.set_context({1});
    CHECK(s.sample(l.data(), 4, &t).is_ok() && t == 0) << "prompt tokens are not penalised";
    CHECK(s.sample(l.data(), 4, &t).is_ok() && t == 1) << "token 0 now 1.8 < 1.9";
    CHECK(s.sample(l.data(), 4, &t).is_ok() && t == 0) << "both penalised once: 1.8 vs 1.7";
  }
  {  // frequency: the penalty grows with the count
    SamplingParams p;
    p.frequency_penalty = 0.06;
    Sampler s(p);
    std::vector<int32_t> picks;
    for (int i = 0; i < 4; ++i) {
      CHECK(s.sample(l.data(), 4, &t).is_ok());
      picks.push_back(t);
    }
    // 0: 2.0 -> pick 0 (count 1: 1.94) -> pick 0 (1.88 < 1.9) -> pick 1 (1.84) -> pick 0
    CHECK((picks == std::vector<int32_t>{0, 0, 1, 0})) << picks[0] << picks[1] << picks[2] << picks[3];
  }
}

TEST(sampler_logprobs_are_log_softmax_of_raw_logits) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f};
  SamplingParams p;
  p.top_logprobs = 3;
  p.repetition_penalty = 2.0;  // penalties change the choice, never the reported distribution
  Sampler s(p);
  s.set_context({1});
  int32_t t = -1;
  glm::TokenLogprobs lp;
  CHECK(s.sample(l.data(), 4, &t, &lp).is_ok());
  double z = 0;
  for (float v : l) z += std::exp(double(v));
  CHECK(t == 3) << t;
  CHECK(std::abs(lp.chosen - (3.0 - std::log(z))) < 1e-6);
  CHECK(lp.top.size() == 3);
  CHECK(lp.top[0].first == 1 && lp.top[1].first == 3 && lp.top[2].first == 2) << "ties to the lower id";
  CHECK(std::abs(lp.top[2].second - (2.0 - std::log(z))) < 1e-6);
}

// The device-sampling protocol on the host (Model::generate with a backend that samples on the device,
// and Backend::download_sampled's default): u and history taken from the Sampler before the step,
// sample_request on the logits, then record(). Must give exactly Sampler::sample's tokens and logprobs
// (the same RNG stream and penalties), with every filter and penalty on.
TEST(sampler_request_protocol_matches_sample) {
  SamplingParams p;
  p.temperature = 0.9, p.top_k = 12, p.top_p = 0.85, p.min_p = 0.01;
  p.repetition_penalty = 1.4, p.presence_penalty = 0.3, p.frequency_penalty = 0.2, p.top_logprobs = 4, p.seed = 99;
  for (double t : {0.9, 0.0}) {
    p.temperature = t;
    Sampler host(p), split(p);
    const std::vector<int32_t> context = {3, 5, 5, 17};
    host.set_context(context);
    split.set_context(context);
    uint32_t r = 7u;
    std::vector<float> l(40);
    for (int step = 0; step < 60; ++step) {
      for (auto& v : l) {
        r = r * 1664525u + 1013904223u;
        v = float(int32_t(r >> 8) - (1 << 23)) / float(1 << 22);
      }
      glm::SampleRequest req;
      req.params = p;
      req.u = split.draw_uniform();
      req.history = split.history();
      int32_t a = -1, b = -1;
      glm::TokenLogprobs la, lb;
      CHECK(host.sample(l.data(), int64_t(l.size()), &a, &la).is_ok());
      CHECK(glm::sample_request(l.data(), int64_t(l.size()), req, &b, &lb).is_ok());
      split.record(b);
      CHECK(a == b && la.chosen == lb.chosen && la.top == lb.top) << "t " << t << " step " << step << ": " << a << " vs " << b;
    }
  }
}

TEST(sampler_grammar_mask_restricts_and_renormalises) {
  // Logits over 40 tokens (two mask words, the second partly past the vocabulary): the mask allows
  // {3, 7, 33}, whose logits are 1.5, 0 and 2.5; token 5 (logit 10) is the unconstrained argmax.
  // Greedy takes the best allowed token; sampling at T = 1 follows the softmax of the allowed logits
  // alone (u on a fine grid); logprobs stay those of the raw logits; an empty mask is an error.
  std::vector<float> logits(40);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(i % 7) * 0.5f;
  logits[5] = 10;
  std::vector<uint32_t> mask(2, 0);
  for (int t : {3, 7, 33}) mask[size_t(t / 32)] |= 1u << (t % 32);
  mask[1] |= 0xff000000u;  // bits past the vocabulary are ignored
  std::vector<float> masked = logits;
  CHECK(glm::apply_token_mask(masked.data(), 40, mask.data()) == 3);
  CHECK(std::isnan(masked[5]) && masked[33] == 2.5f);

  glm::SampleRequest r;
  r.allowed = mask.data();
  r.params.top_logprobs = 1;
  int32_t token = -1;
  glm::TokenLogprobs lp;
  CHECK(glm::sample_request(logits.data(), 40, r, &token, &lp).is_ok());
  CHECK(token == 33) << token;
  CHECK(lp.top.size() == 1 && lp.top[0].first == 5);  // the raw distribution's best, though not allowed

  r.params.temperature = 1;
  r.params.top_logprobs = -1;
  const int n = 20000;
  double count[40] = {0};
  for (int i = 0; i < n; ++i) {
    r.u = (i + 0.5) / n;
    CHECK(glm::sample_request(logits.data(), 40, r, &token, nullptr).is_ok());
    count[token] += 1.0 / n;
  }
  const double z = std::exp(1.5) + 1 + std::exp(2.5);
  CHECK(std::fabs(count[3] - std::exp(1.5) / z) < 1e-3 && std::fabs(count[7] - 1 / z) < 1e-3 &&
        std::fabs(count[33] - std::exp(2.5) / z) < 1e-3)
      << count[3] << " " << count[7] << " " << count[33];

  std::vector<uint32_t> none(2, 0);
  none[1] = 0xff000000u;  // only bits past the vocabulary
  r.allowed = none.data();
  const glm::Status st = glm::sample_request(logits.data(), 40, r, &token, nullptr);
  CHECK(!st.is_ok() && st.code() == glm::ErrorCode::Internal);
}
