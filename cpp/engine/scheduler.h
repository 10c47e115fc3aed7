// The model's scheduler (DESIGN.md rule 14: the scheduler plans, the runner executes): every request of
// every session of one model shares forward steps. Runs on the model's engine thread.
//
// Each step has a token budget. Running requests go first, decodes (one token each) before prefill
// chunks, both in admission order; waiting requests are admitted in arrival order while the budget and
// maxConcurrentRequests allow, and a request whose prompt another running request is already
// computing waits for it and takes the pages from the prefix cache instead. There are no prefill and
// decode phases: each request's tokens simply chase its sequence's length (vLLM V1's model).
//
// A session's requests run one after another in call order (each session has a queue; its head is
// the one that may run). A request spanning several sessions (a batch evaluation) runs once it heads
// all their queues.
//
// KV memory: pages come from the model's pool on demand. When it is empty, cached prefix pages nobody
// holds go first (least recently released), then idle sessions' pages (least recently used; their
// tokens stay and are recomputed when they run again), then running requests are preempted, newest
// first: their pages go back and they are recomputed later, with the same results (the CPU backend is
// batch invariant) and without their caller noticing.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "engine/backend.h"
#include "engine/kv_manager.h"
#include "engine/request.h"
#include "engine/serving_stats.h"
#include "engine/speculation.h"

namespace glm {

struct SchedulerOptions {
  int64_t max_step_tokens = 256;   // rows per forward step (the token budget)
  int64_t max_running = 64;        // maxConcurrentRequests
  int64_t max_queued = 1024;       // maxQueuedRequests: submitted, not yet running
  bool wait_for_shared_prefix = true;
  SpeculationConfig spec;          // draft_tokens 0: the MTP layer never runs
};

// What a step produces, by the plan's selection mode: logits [logit rows, vocab], or tokens (and
// logprobs) per logit row.
struct StepOutput {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
};

// Executes a plan (the Model: forward pass on its backend). `cancelled` is polled between layers.
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  virtual Status run_step(const StepPlan& plan, const std::function<bool()>& cancelled, StepOutput* out) = 0;
  // Whether sampled rows may be chosen on the backend (Backend::samples_on_device).
  virtual bool samples_on_device(const SamplingParams& p) const = 0;
  // One MTP layer step (forward.h mtp_step) over pairs whose hidden states are rows `source_rows` of
  // the last trunk step's plan (chained: of the last MTP step's rows). With plan.greedy_tokens the
  // argmax of each logit row goes to out->tokens, else the logits to out->logits.
  virtual Status run_mtp(const StepPlan& plan, const std::vector<int64_t>& source_rows, bool chained,
                         const std::function<bool()>& cancelled, StepOutput* out) {
    return Status::error(ErrorCode::Internal, "this runner has no MTP layer");
  }
};

class Scheduler {
 public:
  Scheduler(StepRunner& runner, KvManager& kv, const SchedulerOptions& opts, int64_t vocab_size);
  ~Scheduler();

  // Takes a request; one that cannot be taken (queue full, a disposed session, tokens that can never
  // fit) is completed at once through on_done.
  void submit(std::shared_ptr<Request> r);
  // A session is going away: its requests end with Disposed (a batch it is part of rolls back in its
  // other sessions too) and its pages go back to the pool. The caller frees the Sequence afterwards.
  void dispose(Sequence* s);
  // Ends every request with `why` (model dispose, a dead device) and gives every page back.
  void shutdown(const Status& why);
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  // One scheduling round and forward step.
  void step();

  ServingStats stats() const;  // any thread

 private:
  struct Unit {            // one sequence's share of a step
    Request* request;
    Sequence* seq;
    size_t item;           // EvaluateRequest item index (0 for a generation)
    int64_t n;             // tokens scheduled
    int64_t start = 0;     // (plan) the sequence's computed length before the step
    int64_t row_begin = 0; // (plan) its first row in the step
  };

  // A sequence's entry in a plan: its page table, rows [row_begin, +n_rows) from position start_pos.
  static StepPlan::Sequence plan_entry(const Sequence& s, int64_t row_begin, int64_t n_rows, int64_t start_pos) {
    StepPlan::Sequence ps;
    ps.pages = s.pages.data();
    ps.n_pages = int64_t(s.pages.size());
    ps.row_begin = row_begin;
    ps.n_rows = n_rows;
    ps.start_pos = start_pos;
    return ps;
  }
  void finish(Request& r, Status st);
  void rollback(Request& r);
  void advance_queues(const std::vector<Sequence*>& seqs);
  bool heads_all(const Request& r) const;
  void make_ready(const std::shared_ptr<Request>& r);
  void run_reset(ResetRequest& r);
  Status check_fits(const Request& r) const;
  Status prepare(Request& r);
  bool should_wait(const Request& r);
  int64_t remaining(const Sequence& s) const { return s.length() - s.computed; }
  bool wants_token(const Request& r) const;
  bool reclaim_idle();
  void preempt(Request& r);
  void cancel_requests();
  void collect(const StepPlan& plan, const std::vector<Unit>& units, const std::vector<std::pair<Unit*, int64_t>>& owners,
               const StepOutput& out, bool host_select);
  // `grammar_state`: the request's grammar stands right after this token (false for tokens of a round
  // whose later tokens the matcher has already taken), so its end is judged there.
  void on_token(GenerateRequest& g, int32_t token, TokenLogprobs lp, Status st, bool grammar_state = true);
  // Evaluations whose every item is computed are done; so are prompt-only generations (after the
  // step's MTP pass: evaluations may read its logits).
  void complete(const std::vector<Unit>& units);
  // Speculative decoding (scheduler_mtp.cc).
  bool mtp_on() const { return mtp_fill_; }
  void repair_mtp(Sequence& s);
  void drop_drafts(GenerateRequest& g);
  void emit_generation(GenerateRequest& g, const Unit& u, size_t first_owner, size_t n_rows, const StepPlan& plan,
                       const StepOutput& out, bool host_select);
  SampleRequest sample_request_for(GenerateRequest& g, int64_t pos, const int32_t* drafts, size_t n_drafts) const;
  // Constrained decoding (scheduler_grammar.cc).
  bool grammar_allows(const GenerateRequest& g, int32_t token) const;
  int64_t fill_grammar_mask(const GenerateRequest& g, const grammar::Matcher& m, uint32_t* words) const;  // the allowed count
  // (Device sampling) the mask of the request's row `row` in this step, rows being its last verified
  // token then its drafts.
  const uint32_t* device_mask(GenerateRequest& g, int64_t row, const int32_t* drafts, int64_t n_drafts);
  Status select_constrained(GenerateRequest& g, const float* logits, SampleRequest sr, int32_t* token, TokenLogprobs* lp);
  Status advance_grammar(GenerateRequest& g, int32_t token);
  void mtp_pass(const std::vector<Unit>& units);
  void judge_speculation(GenerateRequest& g);
  void suspend_speculation();                               // the model stops running its MTP layer
  bool drafts_now(const Request& r) const;                  // a generation that drafts in this step
  bool fills_mtp(const Request& r, const Unit& u) const;    // the MTP pass covers this unit's rows
  void refresh_stats();
  uint64_t prefix_hash(Sequence& s, int64_t page);

  StepRunner& runner_;
  KvManager& kv_;
  SchedulerOptions opts_;
  int64_t vocab_;
  uint64_t next_id_ = 1;
  uint64_t step_counter_ = 0;
  int64_t queued_ = 0;  // submitted and not yet running (heads or not)
  std::vector<std::shared_ptr<Request>> waiting_;  // ready (at the head of their sessions), arrival order
  std::vector<std::shared_ptr<Request>> running_;  // admission order
  std::unordered_set<Sequence*> sequences_;        // every live sequence that has had a request

  // Statistics (engine thread), published to `snapshot_` after each step.
  ServingStats counters_;
  LatencyWindow ttft_, itl_;
  RateWindow rates_;
  mutable std::mutex snapshot_mu_;
  ServingStats snapshot_;
  std::vector<SampleRequest> step_samples_;
  std::vector<float> mask_work_;  // a constrained row's masked copy
  bool mtp_fill_ = false;  // the MTP layer's KV is filled every step (speculation on and not suspended)
  bool draft_now_ = false; // this step's batch is small enough to draft (SpeculationConfig::max_batch)
  uint64_t model_rounds_ = 0, model_proposed_ = 0, model_accepted_ = 0;  // since load, for suspension
  StepOutput out_;  // reused: a step's logits can be large
};

}  // namespace glm
