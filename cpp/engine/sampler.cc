#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace glm {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

int32_t argmax_token(const float* logits, int64_t vocab) {
  int32_t best = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[best]) best = int32_t(i);
  }
  return best;
}

void Sampler::set_context(const std::vector<int32_t>& tokens) { context_.insert(tokens.begin(), tokens.end()); }

float penalize_logit(float l, const SamplingParams& p, int32_t generated) {
  // CTRL / HF: shrink the logit of every token already in the context towards "less likely".
  if (p.repetition_penalty != 1) {
    const float r = float(p.repetition_penalty);
    l = l > 0 ? l / r : l * r;
  }
  if (generated > 0 && (p.presence_penalty != 0 || p.frequency_penalty != 0)) {
    l -= float(p.presence_penalty + p.frequency_penalty * double(generated));
  }
  return l;
}

std::vector<std::pair<int32_t, int32_t>> Sampler::history() const {
  std::vector<std::pair<int32_t, int32_t>> h;
  h.reserve(context_.size());
  for (int32_t t : context_) {  // counts_ keys are a subset of context_
    const auto it = counts_.find(t);
    h.push_back({t, it == counts_.end() ? 0 : it->second});
  }
  return h;
}

std::vector<std::pair<int32_t, int32_t>> Sampler::history_with(const int32_t* extra, size_t n) const {
  std::vector<std::pair<int32_t, int32_t>> h = history();
  for (size_t i = 0; i < n; ++i) {
    auto it = std::find_if(h.begin(), h.end(), [&](const std::pair<int32_t, int32_t>& e) { return e.first == extra[i]; });
    if (it == h.end()) h.push_back({extra[i], 1});
    else ++it->second;
  }
  return h;
}

double Sampler::counter_uniform(uint64_t seed, int64_t position) {
  // Two splitmix64 rounds over (seed, position): consecutive positions give independent-looking values.
  uint64_t x = seed ^ (uint64_t(position) * 0xd1342543de82ef95ull);
  splitmix64(x);
  uint64_t y = splitmix64(x) ^ seed;
  return double(splitmix64(y) >> 11) * 0x1.0p-53;
}

const float* Sampler::apply_penalties(const float* logits, int64_t vocab) {
  const bool repetition = params_.repetition_penalty != 1 && !context_.empty();
  const bool additive = (params_.presence_penalty != 0 || params_.frequency_penalty != 0) && !counts_.empty();
  if (!repetition && !additive) return logits;
  work_.assign(logits, logits + vocab);
  for (const auto& [t, n] : history()) {
    if (t < 0 || t >= vocab) continue;
    work_[size_t(t)] = penalize_logit(work_[size_t(t)], params_, n);
  }
  return work_.data();
}

void compute_logprobs(const float* logits, int64_t vocab, int32_t token, int64_t top_n, TokenLogprobs* out) {
  double max_l = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) max_l = std::max(max_l, double(logits[i]));
  }
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) sum += std::exp(double(logits[i]) - max_l);
  }
  const double log_z = max_l + std::log(sum);
  out->chosen = float(double(logits[token]) - log_z);
  out->top.clear();
  if (top_n <= 0) return;
  std::vector<std::pair<float, int32_t>> all;
  all.reserve(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) all.push_back({logits[i], int32_t(i)});
  }
  const size_t n = std::min<size_t>(size_t(top_n), all.size());
  std::partial_sort(all.begin(), all.begin() + long(n), all.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (size_t i = 0; i < n; ++i) out->top.push_back({all[i].second, float(double(all[i].first) - log_z)});
}

Status choose_token(const float* logits, int64_t vocab, const SamplingParams& params, double uniform, int32_t* token,
                    std::vector<std::pair<float, int32_t>>* scratch) {
  if (params.temperature == 0) {
    const int32_t t = argmax_token(logits, vocab);
    if (t < 0) return Status::error(ErrorCode::Numerical, "sampler: every logit is NaN");
    *token = t;
    return Status::ok();
  }
  std::vector<std::pair<float, int32_t>> local;
  auto& candidates = scratch ? *scratch : local;
  // Order (as HF's warpers): temperature, then top-k, top-p and min-p on the tempered distribution.
  candidates.clear();
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = logits[i];
    if (std::isnan(l) || l == -INFINITY) continue;
    candidates.push_back({l, int32_t(i)});
  }
  if (candidates.empty()) return Status::error(ErrorCode::Numerical, "sampler: no finite logit");
  // Sorted by logit descending, ties to the lower id, so every filter keeps a prefix.
  auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = candidates.size();
  if (params.top_k > 0 && size_t(params.top_k) < keep) {
    keep = size_t(params.top_k);
    std::partial_sort(candidates.begin(), candidates.begin() + long(keep), candidates.end(), by_logit);
  } else {
    std::sort(candidates.begin(), candidates.end(), by_logit);
  }
  if (candidates[0].first == INFINITY) {  // a +inf logit is a certainty
    *token = candidates[0].second;
    return Status::ok();
  }
  std::vector<double> probs(keep);
  const double inv_t = 1.0 / params.temperature;
  const double top = double(candidates[0].first);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp((double(candidates[i].first) - top) * inv_t);
  if (params.top_p < 1) {
    // Smallest prefix whose probability mass reaches top_p (at least one token).
    double mass = 0;
    size_t n = 0;
    while (n < keep) {
      mass += probs[n] / sum;
      ++n;
      if (mass >= params.top_p) break;
    }
    keep = n;
  }
  if (params.min_p > 0) {
    // Keep tokens whose probability is at least min_p times the most likely one's (probs[0] == 1).
    size_t n = 1;
    while (n < keep && probs[n] >= params.min_p) ++n;
    keep = n;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs[i];
  double u = uniform * total;
  *token = candidates[keep - 1].second;  // if rounding leaves u at the very top of the range
  for (size_t i = 0; i < keep; ++i) {
    u -= probs[i];
    if (u < 0) {
      *token = candidates[i].second;
      break;
    }
  }
  return Status::ok();
}

Status Sampler::sample(const float* raw_logits, int64_t vocab, int32_t* token, TokenLogprobs* logprobs) {
  const float* logits = apply_penalties(raw_logits, vocab);
  // u is drawn before the filters (one draw per step at temperature > 0, whatever the logits), so a
  // device-side selection can take it from this generator ahead of the step.
  const double u = draw_uniform();
  const Status st = choose_token(logits, vocab, params_, u, token, &candidates_);
  if (!st.is_ok()) return st;
  if (logprobs && params_.top_logprobs >= 0) compute_logprobs(raw_logits, vocab, *token, params_.top_logprobs, logprobs);
  record(*token);
  return Status::ok();
}

int64_t apply_token_mask(float* logits, int64_t vocab, const uint32_t* allowed) {
  int64_t kept = 0;
  for (int64_t w = 0; w * 32 < vocab; ++w) {
    const uint32_t bits = allowed[w];
    const int64_t end = std::min<int64_t>(vocab, (w + 1) * 32);
    if (bits == 0xffffffffu && end - w * 32 == 32) {
      kept += 32;
      continue;
    }
    for (int64_t i = w * 32; i < end; ++i) {
      if (bits >> (i - w * 32) & 1u) ++kept;
      else logits[i] = NAN;
    }
  }
  return kept;
}

Status sample_request(const float* raw_logits, int64_t vocab, const SampleRequest& r, int32_t* token, TokenLogprobs* logprobs,
                      std::vector<float>* work) {
  const SamplingParams& p = r.params;
  const float* logits = raw_logits;
  const bool penalties = p.repetition_penalty != 1 || p.presence_penalty != 0 || p.frequency_penalty != 0;
  std::vector<float> local;
  auto& w = work ? *work : local;
  if ((penalties && !r.history.empty()) || r.allowed) {
    w.assign(raw_logits, raw_logits + vocab);
    logits = w.data();
  }
  if (penalties && !r.history.empty()) {
    // As Sampler::apply_penalties: penalize_logit over the history pairs (identity where off).
    for (const auto& [t, n] : r.history) {
      if (t < 0 || t >= vocab) continue;
      w[size_t(t)] = penalize_logit(w[size_t(t)], p, n);
    }
  }
  if (r.allowed && apply_token_mask(w.data(), vocab, r.allowed) == 0) {
    return Status::error(ErrorCode::Internal, "sampler: the grammar allows no token");
  }
  GLM_TRY(choose_token(logits, vocab, p, r.u, token));
  if (logprobs && p.top_logprobs >= 0) compute_logprobs(raw_logits, vocab, *token, p.top_logprobs, logprobs);
  return Status::ok();
}

}  // namespace glm
