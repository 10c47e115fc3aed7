// The scheduler's speculative decoding (spec §3, ../shared/reading/mtp.md): filling the MTP layer's
// KV after every trunk step, drafting with it, and verifying drafts token by token. The plan's
// other half (drafts ride in a request's rows like any other token) is in scheduler.cc.
#include <algorithm>

#include "engine/scheduler.h"

namespace glm {

namespace {

// Tokens [n, length) leave the sequence without touching its pages or computed count (the caller
// fixes those): rejected drafts whose KV rows are simply written again later.
void drop_tail(Sequence& s, int64_t n, int64_t page_tokens) {
  if (n >= s.length()) return;
  s.tokens.resize(size_t(n));
  s.prefix_hashes.resize(std::min(s.prefix_hashes.size(), size_t(n / page_tokens)));
}

}  // namespace

void Scheduler::repair_mtp(Sequence& s) {
  // Pairs need the trunk's hidden states, which exist only in the step that computes their positions:
  // positions whose pair is missing (a prompt's last token, pages from the prefix cache) are computed
  // again (their KV comes out the same).
  if (s.mtp_pairs < s.computed) kv_.rewind(s, s.mtp_pairs);
}

void Scheduler::drop_drafts(GenerateRequest& g) {
  if (g.drafts == 0) return;
  Sequence& s = *g.sequence;
  drop_tail(s, s.length() - g.drafts, kv_.page_tokens());
  g.drafts = 0;
  if (s.computed > s.length()) kv_.rewind(s, s.length());
  if (s.mtp_pairs > s.computed) s.mtp_pairs = s.computed;
}

SampleRequest Scheduler::sample_request_for(GenerateRequest& g, int64_t pos, const int32_t* drafts, size_t n_drafts) const {
  SampleRequest sr;
  sr.params = g.params.sampling;
  sr.u = g.sampler->uniform_at(pos + 1);  // the draw of the token at pos + 1, whatever step samples it
  if (g.penalties) sr.history = n_drafts ? g.sampler->history_with(drafts, n_drafts) : g.sampler->history();
  return sr;
}

void Scheduler::emit_generation(GenerateRequest& g, const Unit& u, size_t first_owner, size_t n_rows, const StepPlan& plan,
                                const StepOutput& out, bool host_select) {
  if (g.done()) return;
  if (g.stop && g.stop->load(std::memory_order_relaxed)) {
    g.result.finish_reason = "stop_requested";
    finish(g, Status::ok());
    return;
  }
  Sequence& s = *g.sequence;
  const int64_t D = std::min<int64_t>(g.drafts, int64_t(n_rows) - 1);  // drafts this step verifies
  const int64_t L = s.length() - 1 - g.drafts;                          // the last verified token
  const std::vector<int32_t> drafts(s.tokens.begin() + L + 1, s.tokens.begin() + L + 1 + D);
  // The target's token at every row, as one-token steps would choose it; drafts are accepted while
  // they equal it, and the first that does not is replaced by it (or all pass and the last row's
  // token is a bonus).
  std::vector<int32_t> chosen;
  std::vector<TokenLogprobs> logprobs;
  int64_t accepted = 0;
  Status sel;
  for (int64_t i = 0; i <= D; ++i) {
    const size_t o = first_owner + size_t(i);
    int32_t token = -1;
    TokenLogprobs lp;
    if (host_select) {
      const SampleRequest sr = sample_request_for(g, L + i, drafts.data(), size_t(i));
      const float* row = out.logits.data() + o * size_t(vocab_);
      sel = g.matcher ? select_constrained(g, row, sr, &token, &lp) : sample_request(row, vocab_, sr, &token, &lp);
    } else {
      token = out.tokens[o];
      if (plan.sample_requests && g.params.sampling.top_logprobs >= 0) lp = out.logprobs[o];
      if (token < 0) {
        sel = Status::error(ErrorCode::Numerical, plan.greedy_tokens ? "sampler: every logit is NaN"
                                                                      : "sampler: every logit is NaN or none is finite");
      }
    }
    if (sel.is_ok()) sel = advance_grammar(g, token);  // a draft the grammar rejects is never chosen
    if (!sel.is_ok()) break;
    chosen.push_back(token);
    logprobs.push_back(std::move(lp));
    if (i == D || token != drafts[size_t(i)]) break;
    ++accepted;
    if (g.matcher && !g.matcher->can_continue()) break;  // the grammar ends inside the accepted drafts
  }
  if (D > 0) {
    g.result.draft_tokens += D;
    g.result.accepted_draft_tokens += accepted;
    ++g.spec_rounds;
    ++counters_.draft_rounds;
    counters_.draft_tokens += uint64_t(D);
    counters_.accepted_draft_tokens += uint64_t(accepted);
    model_rounds_ += 1;
    model_proposed_ += uint64_t(D);
    model_accepted_ += uint64_t(accepted);
  }
  // The verified token's KV and the accepted drafts' stay; the drafts leave the tokens and come back
  // one by one as they are emitted (on_token appends each token it does not end the run with).
  drop_tail(s, L + 1, kv_.page_tokens());
  g.drafts = 0;
  s.computed = std::min(u.start + u.n, L + 1 + accepted);
  for (size_t i = 0; i < chosen.size() && !g.done(); ++i) {
    g.sampler->record(chosen[i]);
    // (The matcher has taken every chosen token already: only the last one sees its state.)
    on_token(g, chosen[i], std::move(logprobs[i]), Status::ok(), i + 1 == chosen.size());
  }
  if (!sel.is_ok() && !g.done()) on_token(g, -1, TokenLogprobs(), sel);
  if (s.computed > s.length()) {  // the run ended inside the accepted tokens
    kv_.rewind(s, s.length());
    kv_.trim(s);
  }
  if (s.mtp_pairs > s.computed) s.mtp_pairs = s.computed;
  if (D > 0 && !g.done()) judge_speculation(g);
}

void Scheduler::judge_speculation(GenerateRequest& g) {
  const SpeculationConfig& c = opts_.spec;
  if (!drafting_pays(c, g.spec_rounds, g.result.draft_tokens, g.result.accepted_draft_tokens)) g.spec_k = 0;
  // The model's drafts are useless, or do not pay on this traffic: stop running the MTP layer at all.
  // (min_acceptance 0 turns the policy off: then drafting never stops.)
  const bool useless = c.min_acceptance > 0 && int64_t(model_rounds_) >= c.suspend_rounds && model_accepted_ == 0;
  const bool below = int64_t(model_rounds_) >= c.probe_rounds && double(model_accepted_) < c.min_acceptance * double(model_proposed_);
  if (useless || below) suspend_speculation();
}

void Scheduler::suspend_speculation() {
  mtp_fill_ = false;
  kv_.set_mtp(false);
  for (const auto& r : running_) {
    if (r->kind == Request::Kind::Generate) static_cast<GenerateRequest&>(*r).spec_k = 0;
  }
}

bool Scheduler::drafts_now(const Request& r) const {
  return r.kind == Request::Kind::Generate && static_cast<const GenerateRequest&>(r).spec_k > 0 && draft_now_;
}

bool Scheduler::fills_mtp(const Request& r, const Unit& u) const {
  if (r.kind == Request::Kind::Evaluate) return true;
  const auto& g = static_cast<const GenerateRequest&>(r);
  return u.start < g.prompt_end || drafts_now(r) || opts_.spec.fill_while_idle;
}

void Scheduler::mtp_pass(const std::vector<Unit>& units) {
  const int64_t P = kv_.page_tokens();
  StepPlan plan;
  plan.first_key = 1;  // slot 0 holds no pair
  std::vector<int64_t> source_rows;
  struct Drafter {
    GenerateRequest* g;
    int64_t row;  // its logit row in the pass
    int64_t k;    // drafts to make
  };
  std::vector<Drafter> drafters;
  struct Wanted {
    EvaluateRequest::Item* item;
    int64_t row, n;
  };
  std::vector<Wanted> wanted;  // evaluations that asked for the MTP layer's logits
  std::vector<std::pair<Sequence*, int64_t>> advanced;  // (sequence, pairs held after the pass)
  for (const Unit& u : units) {
    Sequence& s = *u.seq;
    Request& r = *u.request;
    if (r.done() && !r.status.is_ok()) continue;  // rolled back
    if (!fills_mtp(r, u)) continue;
    if (std::find_if(advanced.begin(), advanced.end(), [&](const auto& a) { return a.first == &s; }) != advanced.end()) continue;
    if (s.mtp_pairs < u.start) continue;  // its hidden states are gone: repaired before its next step
    const int64_t from = s.mtp_pairs;
    int64_t to = std::min({s.computed, s.length() - 1, u.start + u.n});  // pairs [from, to)
    if (to <= from) continue;
    bool ok = false;
    const Status st = kv_.reserve(s, to + 1, &ok);  // pair to-1 sits at slot `to`
    if (!st.is_ok()) return shutdown(st);
    if (!ok) to = std::min<int64_t>(to, int64_t(s.pages.size()) * P - 1);
    if (to <= from) continue;

    const StepPlan::Sequence ps = plan_entry(s, plan.rows(), to - from, from + 1);
    for (int64_t t = from; t < to; ++t) {
      plan.tokens.push_back(s.tokens[size_t(t + 1)]);
      plan.positions.push_back(int32_t(t + 1));
      plan.rope_positions.push_back(int32_t(t));
      source_rows.push_back(u.row_begin + (t - u.start));
    }
    plan.sequences.push_back(ps);
    advanced.push_back({&s, to});

    if (r.kind == Request::Kind::Evaluate) {
      auto& item = static_cast<EvaluateRequest&>(r).items[u.item];
      if (!item.draft_logits) continue;
      const int64_t first = std::max<int64_t>(from, item.before > 0 ? item.before - 1 : 0);
      for (int64_t t = first; t < to; ++t) plan.logit_rows.push_back(ps.row_begin + (t - from));
      if (to > first) wanted.push_back({&item, int64_t(plan.logit_rows.size()) - (to - first), to - first});
      continue;
    }
    auto& g = static_cast<GenerateRequest&>(r);
    // Drafts follow the pending token: its pair (h at the last computed position, the new token) is
    // the pass's last row of this sequence.
    if (g.done() || !drafts_now(g) || to != s.computed || s.computed != s.length() - 1) continue;
    const int64_t k = std::min({g.spec_k, g.params.max_tokens - int64_t(g.result.tokens.size()) - 1, s.capacity() - s.length()});
    if (k <= 0) continue;
    drafters.push_back({&g, int64_t(plan.logit_rows.size()), k});
    plan.logit_rows.push_back(ps.row_begin + ps.n_rows - 1);
  }
  if (plan.rows() == 0) return;
  plan.greedy_tokens = wanted.empty();  // drafts are argmax tokens; full logits only when asked for

  const std::function<bool()> never = [] { return false; };  // short, and shared: one caller's abort does not stop it
  StepOutput out;
  Status st = runner_.run_mtp(plan, source_rows, false, never, &out);
  ++counters_.mtp_steps;
  if (!st.is_ok()) {
    if (st.code() == ErrorCode::EngineDead) return shutdown(st);
    // Anything else: speculation is off from now on (the trunk's results stand; nothing was lost).
    return suspend_speculation();
  }
  for (const auto& [s, to] : advanced) s->mtp_pairs = to;
  const size_t V = size_t(vocab_);
  for (const Wanted& w : wanted) {
    const float* src = out.logits.data() + size_t(w.row) * V;
    w.item->draft_logits_out.insert(w.item->draft_logits_out.end(), src, src + size_t(w.n) * V);
  }
  // Each drafter's first draft; chained drafts feed the MTP output back (after shared_head.norm).
  std::vector<std::vector<int32_t>> drafts(drafters.size());
  for (size_t i = 0; i < drafters.size(); ++i) {
    const int64_t row = drafters[i].row;
    const int32_t d = plan.greedy_tokens ? out.tokens[size_t(row)] : argmax_token(out.logits.data() + size_t(row) * V, vocab_);
    if (d >= 0) drafts[i].push_back(d);
  }
  std::vector<int64_t> prev_rows;
  for (const Drafter& d : drafters) prev_rows.push_back(plan.logit_rows[size_t(d.row)]);  // its plan row: the MTP output row
  for (int64_t j = 1;; ++j) {
    StepPlan chain;
    chain.first_key = 1;
    std::vector<int64_t> rows, who;
    for (size_t i = 0; i < drafters.size(); ++i) {
      if (int64_t(drafts[i].size()) != j || drafters[i].k <= j) continue;
      Sequence& s = *drafters[i].g->sequence;
      const int64_t slot = s.computed + j;  // scratch slots past the pairs held: written again next round
      bool ok = false;
      if (!kv_.reserve(s, slot + 1, &ok).is_ok() || !ok) continue;
      const StepPlan::Sequence ps = plan_entry(s, chain.rows(), 1, slot);
      chain.sequences.push_back(ps);
      chain.tokens.push_back(drafts[i].back());
      chain.positions.push_back(int32_t(slot));
      chain.rope_positions.push_back(int32_t(slot - 1));
      chain.logit_rows.push_back(ps.row_begin);
      rows.push_back(prev_rows[i]);
      who.push_back(int64_t(i));
    }
    if (chain.rows() == 0) break;
    chain.greedy_tokens = true;
    st = runner_.run_mtp(chain, rows, true, never, &out);
    ++counters_.mtp_steps;
    if (!st.is_ok()) {
      if (st.code() == ErrorCode::EngineDead) return shutdown(st);
      break;  // keep the drafts made so far
    }
    for (size_t c = 0; c < who.size(); ++c) {
      const size_t i = size_t(who[c]);
      prev_rows[i] = int64_t(c);
      if (out.tokens[c] >= 0) drafts[i].push_back(out.tokens[c]);
    }
  }
  for (size_t i = 0; i < drafters.size(); ++i) {
    if (drafts[i].empty()) continue;
    GenerateRequest& g = *drafters[i].g;
    g.sequence->tokens.insert(g.sequence->tokens.end(), drafts[i].begin(), drafts[i].end());
    g.drafts = int64_t(drafts[i].size());
  }
}

}  // namespace glm
