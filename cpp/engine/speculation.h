// Speculative decoding's policy (MTP drafts, spec §3): how many drafts a request proposes per round,
// and when drafting stops paying. Exactness does not depend on it: verification accepts a draft only
// where the target would have produced the same token (greedy) or drew it (sampling, point-mass
// drafts: draw y from the target's processed distribution, accept while y equals the draft).
#pragma once
#include <algorithm>
#include <cstdint>

namespace glm {

struct SpeculationConfig {
  // Drafts per round for requests that do not choose (0: the model does not run its MTP layer).
  int64_t draft_tokens = 0;
  // Steps with more generating requests than this draft nothing: a large batch already reads every
  // weight once per step, so extra verification rows cost compute instead of riding on memory reads.
  // The CPU default (1) is what npm run bench:spec measured on the default model: at 2 streams k = 1
  // was already slower than no drafts (README, "Speculative decoding").
  int64_t max_batch = 1;
  // Per-draft acceptance below which a round costs more than it yields (break-even; measured with
  // npm run bench:spec, README). A request below it after probe_rounds stops drafting.
  double min_acceptance = 0.3;
  int64_t probe_rounds = 8;
  // The model stops running its MTP layer altogether (KV fill included) when none of the drafts of its
  // first suspend_rounds rounds was accepted (useless drafts: random weights match ~1/vocab of the
  // time), or when its acceptance over all rounds is below break-even after probe_rounds. Judged early,
  // since every probe round of a useless MTP layer costs a verification row and an MTP step. A model
  // misjudged by its first rounds keeps its trunk's speed, losing only the drafts; with per-draft
  // acceptance a the first rounds misjudge it with probability (1 - a)^3 (2.7% at a = 0.7, where the
  // earlier rule, below break-even after 4 rounds, misjudged 8.4%).
  int64_t suspend_rounds = 3;
  // Whether the MTP layer's KV is filled for generated tokens of requests that are not drafting (a
  // large batch, or drafting stopped): the fill costs one MoE layer per step, cheap on a deep model
  // (1/93 of GLM-4.5), a quarter of a 4-layer one. Without it a request that starts drafting again
  // first computes its tokens since the gap again. Prompts are always filled (their pages are shared).
  bool fill_while_idle = true;
};

// Drafts a request asks for: its own choice, or the model's default.
inline int64_t requested_drafts(const SpeculationConfig& c, int64_t requested) {
  if (c.draft_tokens == 0) return 0;
  return requested < 0 ? c.draft_tokens : requested;
}

// Whether drafting still pays after `rounds` rounds with `accepted` of `proposed` drafts taken.
inline bool drafting_pays(const SpeculationConfig& c, int64_t rounds, int64_t proposed, int64_t accepted) {
  if (rounds < c.probe_rounds || proposed == 0) return true;
  return double(accepted) >= c.min_acceptance * double(proposed);
}

// Verification of one request's drafts from the target's chosen token at every row: drafts[i] was fed
// after row i, so it is accepted while it equals chosen[i] (a token, not -1 for a failed selection).
// Returns the accepted count m in [0, n]; the round emits chosen[0..m] (the last a correction or bonus).
// The rule the CPU scheduler applies token by token and cuda/verify_drafts.cu for a whole batch.
inline int64_t accepted_drafts(const int32_t* chosen, const int32_t* drafts, int64_t n) {
  int64_t m = 0;
  while (m < n && chosen[m] >= 0 && chosen[m] == drafts[m]) ++m;
  return m;
}

}  // namespace glm
