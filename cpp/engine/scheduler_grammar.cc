// The scheduler's constrained decoding: the mask of the tokens a generation's grammar allows next
// (grammar tokens, plus its stop tokens where the grammar is complete), and the host-side selection
// under it. Greedy rows check the model's own choice first and build the mask only when the grammar
// rejects it (llama.cpp's shortcut; exact for argmax). Sampled rows always use the full mask, so the
// distribution is the model's, renormalised over the allowed tokens.
#include <algorithm>

#include "engine/scheduler.h"

namespace glm {

bool Scheduler::grammar_allows(const GenerateRequest& g, int32_t token) const {
  if (g.params.is_stop_token(token)) {
    return g.matcher->accepting();
  }
  return g.matcher->allows(token);
}

int64_t Scheduler::fill_grammar_mask(const GenerateRequest& g, const grammar::Matcher& m, uint32_t* words) const {
  const int64_t n_words = (vocab_ + 31) / 32;
  m.fill_mask(words);
  if (m.accepting()) {
    for (int32_t t : g.params.stop_tokens) {
      if (t >= 0 && t < vocab_) words[t / 32] |= 1u << (t % 32);
    }
  }
  // Bits past the vocabulary (the last word's tail) never count.
  if (vocab_ % 32) words[n_words - 1] &= (1u << (vocab_ % 32)) - 1;
  int64_t allowed = 0;
  for (int64_t w = 0; w < n_words; ++w) allowed += __builtin_popcount(words[w]);
  return allowed;
}

Status Scheduler::select_constrained(GenerateRequest& g, const float* logits, SampleRequest sr, int32_t* token, TokenLogprobs* lp) {
  const SamplingParams& p = sr.params;
  if (p.temperature == 0 && sr.history.empty()) {
    const int32_t t = argmax_token(logits, vocab_);
    if (t >= 0 && grammar_allows(g, t)) {
      *token = t;
      if (lp && p.top_logprobs >= 0) compute_logprobs(logits, vocab_, t, p.top_logprobs, lp);
      return Status::ok();
    }
  }
  g.mask.resize(size_t((vocab_ + 31) / 32));
  if (fill_grammar_mask(g, *g.matcher, g.mask.data()) == 0) {
    return Status::error(ErrorCode::Internal, "constrained decoding: the grammar allows no token here");
  }
  sr.allowed = g.mask.data();
  return sample_request(logits, vocab_, sr, token, lp, &mask_work_);
}

const uint32_t* Scheduler::device_mask(GenerateRequest& g, int64_t row, const int32_t* drafts, int64_t n_drafts) {
  const size_t W = size_t((vocab_ + 31) / 32);
  if (row == 0) {
    // Every row of the request at once: row j's mask is the grammar's after drafts 0 .. j-1. Rows after a
    // draft the grammar rejects are never used (that draft cannot be chosen); they repeat its mask.
    g.mask.assign(W * size_t(n_drafts + 1), 0);
    grammar::Matcher probe = *g.matcher;
    bool live = true;
    for (int64_t j = 0; j <= n_drafts; ++j) {
      uint32_t* words = g.mask.data() + size_t(j) * W;
      if (live) fill_grammar_mask(g, probe, words);
      else std::copy_n(words - W, W, words);
      if (j < n_drafts && live) live = probe.accept(drafts[j]);
    }
  }
  return g.mask.data() + size_t(row) * W;
}

Status Scheduler::advance_grammar(GenerateRequest& g, int32_t token) {
  if (!g.matcher) return Status::ok();
  if (g.params.is_stop_token(token)) {
    return Status::ok();  // a stop token ends the run; the grammar does not see it
  }
  if (!g.matcher->accept(token)) {
    return Status::error(ErrorCode::Internal, "constrained decoding: the chosen token " + std::to_string(token) + " is outside the grammar");
  }
  return Status::ok();
}

}  // namespace glm
