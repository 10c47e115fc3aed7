#include "engine/scheduler.h"

#include <algorithm>
#include <string>

namespace glm {

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

Scheduler::Scheduler(StepRunner& runner, KvManager& kv, const SchedulerOptions& opts, int64_t vocab_size)
    : runner_(runner), kv_(kv), opts_(opts), vocab_(vocab_size) {
  mtp_fill_ = opts_.spec.draft_tokens > 0;
  kv_.set_mtp(mtp_fill_);
  refresh_stats();
}

Scheduler::~Scheduler() {
  shutdown(Status::error(ErrorCode::Disposed, "model is disposed"));
  for (Sequence* s : sequences_) s->scheduler = nullptr;  // sequences that outlive the model
}

// ---------------------------------------------------------------------------------------------
// Submission and completion
// ---------------------------------------------------------------------------------------------
void Scheduler::submit(std::shared_ptr<Request> r) {
  r->id = next_id_++;
  r->submitted = Clock::now();
  auto reject = [&](Status st) {
    r->status = std::move(st);
    r->phase = Request::Phase::Done;
    ++counters_.requests_failed;
    if (r->on_done) r->on_done(*r);
  };
  const std::vector<Sequence*> seqs = r->sequences();
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i]->disposed) return reject(Status::error(ErrorCode::Disposed, "session is disposed"));
    for (size_t j = 0; j < i; ++j) {
      if (seqs[j] == seqs[i]) return reject(Status::error(ErrorCode::InvalidParam, "a batch may hold each session only once"));
    }
  }
  if (r->kind == Request::Kind::Evaluate) {
    for (const auto& item : static_cast<EvaluateRequest&>(*r).items) {
      if (item.tokens.empty()) return reject(Status::error(ErrorCode::InvalidParam, "evaluate needs at least one token"));
    }
  }
  // The queue bound applies beyond the free running slots: a request that can start at the next step
  // is not waiting (so maxQueuedRequests 0 means "no queue", not "no requests").
  const int64_t free_slots = std::max<int64_t>(0, opts_.max_running - int64_t(running_.size()));
  if (queued_ >= opts_.max_queued + free_slots) {
    return reject(Status::error(ErrorCode::QueueFull, "the model's request queue is full (" + str(opts_.max_queued) +
                                                          " requests waiting beyond " + str(opts_.max_running) +
                                                          " running; maxQueuedRequests)"));
  }
  for (Sequence* s : seqs) {
    sequences_.insert(s);
    s->scheduler = this;
    s->queue.push_back(r);
  }
  ++queued_;
  if (heads_all(*r)) make_ready(r);
  refresh_stats();
}

bool Scheduler::heads_all(const Request& r) const {
  for (Sequence* s : r.sequences()) {
    if (s->queue.empty() || s->queue.front().get() != &r) return false;
  }
  return true;
}

void Scheduler::make_ready(const std::shared_ptr<Request>& r) {
  if (r->phase != Request::Phase::Queued) return;
  if (r->kind == Request::Kind::Reset) return run_reset(static_cast<ResetRequest&>(*r));
  r->phase = Request::Phase::Waiting;
  // Arrival order (a request becomes ready when the one before it on its session finishes, which can
  // be after later arrivals on other sessions).
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), r->id,
                             [](uint64_t id, const std::shared_ptr<Request>& w) { return id < w->id; });
  waiting_.insert(it, r);
}

void Scheduler::run_reset(ResetRequest& r) {
  r.phase = Request::Phase::Running;
  --queued_;
  kv_.truncate(*r.sequence, 0);
  finish(r, Status::ok());
}

void Scheduler::advance_queues(const std::vector<Sequence*>& seqs) {
  for (Sequence* s : seqs) {
    if (s->queue.empty()) continue;
    std::shared_ptr<Request> head = s->queue.front();
    if (heads_all(*head)) make_ready(head);
  }
}

void Scheduler::finish(Request& r, Status st) {
  if (r.done()) return;
  const Request::Phase was = r.phase;
  r.status = std::move(st);
  if (r.kind == Request::Kind::Generate) drop_drafts(static_cast<GenerateRequest&>(r));  // unverified drafts never stay
  if (!r.status.is_ok()) rollback(r);
  const auto drop = [&](std::vector<std::shared_ptr<Request>>& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](const std::shared_ptr<Request>& x) { return x.get() == &r; }), v.end());
  };
  if (was == Request::Phase::Running) drop(running_);
  if (was == Request::Phase::Waiting) drop(waiting_);
  if (was != Request::Phase::Running) --queued_;
  std::shared_ptr<Request> keep;  // the queues may hold the last reference
  const std::vector<Sequence*> seqs = r.sequences();
  for (Sequence* s : seqs) {
    if (was == Request::Phase::Running) s->running = false;
    kv_.trim(*s);
    for (auto it = s->queue.begin(); it != s->queue.end(); ++it) {
      if (it->get() == &r) {
        keep = *it;
        s->queue.erase(it);
        break;
      }
    }
  }
  if (r.kind == Request::Kind::Generate && was == Request::Phase::Running) {
    auto& g = static_cast<GenerateRequest&>(r);
    const auto now = Clock::now();
    if (g.result.tokens.empty()) g.result.prefill_ms = ms_between(g.admitted, now);
    else g.result.decode_ms = ms_between(g.first_token, now);
  }
  r.phase = Request::Phase::Done;
  if (r.status.is_ok()) ++counters_.requests_finished;
  else ++counters_.requests_failed;
  refresh_stats();  // what the caller reads once its promise settles
  if (r.on_done) r.on_done(r);
  advance_queues(seqs);
}

void Scheduler::rollback(Request& r) {
  if (!r.prepared) return;
  if (r.kind == Request::Kind::Evaluate) {
    for (auto& item : static_cast<EvaluateRequest&>(r).items) kv_.truncate(*item.sequence, item.before);
  } else if (r.kind == Request::Kind::Generate) {
    auto& g = static_cast<GenerateRequest&>(r);
    const int64_t k = int64_t(g.result.tokens.size());
    kv_.truncate(*g.sequence, k == 0 ? g.rollback_to : g.prompt_end + k - 1);
  }
}

void Scheduler::dispose(Sequence* s) {
  s->disposed = true;
  while (!s->queue.empty()) {
    std::shared_ptr<Request> r = s->queue.front();
    finish(*r, Status::error(ErrorCode::Disposed, "session is disposed"));
  }
  kv_.release(*s);
  sequences_.erase(s);
  s->scheduler = nullptr;
  refresh_stats();
}

void Scheduler::shutdown(const Status& why) {
  std::vector<std::shared_ptr<Request>> all;
  for (Sequence* s : sequences_) all.insert(all.end(), s->queue.begin(), s->queue.end());
  for (auto& r : all) finish(*r, why);
  for (Sequence* s : sequences_) kv_.release(*s);
  refresh_stats();
}

void Scheduler::cancel_requests() {
  std::vector<std::shared_ptr<Request>> cancelled;
  for (Sequence* s : sequences_) {
    for (const auto& r : s->queue) {
      if (r->cancelled()) cancelled.push_back(r);
    }
  }
  for (auto& r : cancelled) {
    finish(*r, Status::error(ErrorCode::Aborted, r->phase == Request::Phase::Running ? "aborted" : "aborted before it started"));
  }
}

// ---------------------------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------------------------
Status Scheduler::prepare(Request& r) {
  const int64_t pool_positions = kv_.pool().n_pages() * kv_.page_tokens();
  auto pool_error = [&](int64_t need) {
    return Status::error(ErrorCode::ContextOverflow,
                         "context overflow: " + str(need) + " positions cannot fit in the KV cache pool (" +
                             str(kv_.pool().n_pages()) + " pages of " + str(kv_.page_tokens()) + " = " + str(pool_positions) +
                             " positions; kvCacheSize) even with nothing else running");
  };
  if (r.kind == Request::Kind::Evaluate) {
    auto& e = static_cast<EvaluateRequest&>(r);
    int64_t pages = 0, total = 0;
    for (auto& item : e.items) {
      Sequence& s = *item.sequence;
      const int64_t need = s.length() + int64_t(item.tokens.size());
      if (need > s.capacity()) {
        return Status::error(ErrorCode::ContextOverflow,
                             "context overflow: " + str(int64_t(item.tokens.size())) + " new tokens + " + str(s.length()) +
                                 " in the session = " + str(need) + " exceed the context length " + str(s.capacity()));
      }
      pages += kv_.pages_for(need);
      total += need;
    }
    if (pages > kv_.pool().n_pages()) return pool_error(total);
    for (auto& item : e.items) {
      Sequence& s = *item.sequence;
      kv_.set_namespace(s, r.cache_namespace);
      item.before = item.logits_from = s.length();
      s.tokens.insert(s.tokens.end(), item.tokens.begin(), item.tokens.end());
      counters_.prefix_cache_queries += uint64_t(item.tokens.size());
    }
  } else if (r.kind == Request::Kind::Generate) {
    auto& g = static_cast<GenerateRequest&>(r);
    Sequence& s = *g.sequence;
    kv_.set_namespace(s, r.cache_namespace);
    int64_t keep = s.length();
    if (g.params.reuse_prefix) {
      // The prompt is the whole context: keep the longest common prefix (at least the last prompt
      // token is evaluated again: its logits start the generation).
      size_t common = 0;
      while (common < s.tokens.size() && common < g.prompt.size() && s.tokens[common] == g.prompt[common]) ++common;
      if (common == g.prompt.size()) --common;
      keep = int64_t(common);
    }
    const int64_t need = keep + int64_t(g.prompt.size()) - (g.params.reuse_prefix ? keep : 0);
    if (need > s.capacity()) {
      return Status::error(ErrorCode::ContextOverflow, "context overflow: the prompt needs " + str(need) +
                                                           " positions; the context length is " + str(s.capacity()));
    }
    const int64_t longest = std::min(s.capacity(), need + std::max<int64_t>(g.params.max_tokens - 1, 0));
    if (kv_.pages_for(longest) > kv_.pool().n_pages()) return pool_error(longest);
    kv_.truncate(s, keep);
    g.rollback_to = keep;
    s.tokens.insert(s.tokens.end(), g.prompt.begin() + (g.params.reuse_prefix ? keep : 0), g.prompt.end());
    g.prompt_end = s.length();
    g.sampler = std::make_unique<Sampler>(g.params.sampling);
    g.sampler->set_context(s.tokens);
    const SamplingParams& sp = g.params.sampling;
    g.penalties = sp.repetition_penalty != 1 || sp.presence_penalty != 0 || sp.frequency_penalty != 0;
    if (g.params.grammar) g.matcher = std::make_unique<grammar::Matcher>(g.params.grammar);
    // (A constrained row goes through the sampler, on the device or the host, under its grammar's mask.)
    g.greedy_only = sp.temperature == 0 && sp.top_logprobs < 0 && !g.penalties && !g.matcher;
    g.spec_k = mtp_fill_ ? requested_drafts(opts_.spec, g.params.draft_tokens) : 0;
    g.result.prompt_tokens = int64_t(g.prompt.size());
    counters_.prefix_cache_queries += uint64_t(g.prompt.size());
  }
  r.prepared = true;
  return Status::ok();
}

bool Scheduler::wants_token(const Request& r) const {
  return r.kind == Request::Kind::Generate && static_cast<const GenerateRequest&>(r).params.max_tokens > 0;
}

uint64_t Scheduler::prefix_hash(Sequence& s, int64_t page) {
  const int64_t P = kv_.page_tokens();
  while (int64_t(s.prefix_hashes.size()) <= page) {
    const int64_t i = int64_t(s.prefix_hashes.size());
    uint64_t h = i == 0 ? mix(s.root_chain) : s.prefix_hashes.back();
    for (int64_t t = i * P; t < (i + 1) * P; ++t) h = mix(h ^ (uint64_t(uint32_t(s.tokens[size_t(t)])) + 0x9e3779b97f4a7c15ull));
    s.prefix_hashes.push_back(h);
  }
  return s.prefix_hashes[size_t(page)];
}

// True when a running request is computing the next page this request would compute itself: waiting
// a few steps for it to publish the page beats computing the same prefix twice (64 users arriving
// together with one system prompt prefill it once).
bool Scheduler::should_wait(const Request& r) {
  if (!opts_.wait_for_shared_prefix || !kv_.prefix_cache()) return false;
  const int64_t P = kv_.page_tokens();
  for (Sequence* s : r.sequences()) {
    if (s->computed % P != 0) continue;
    const int64_t page = s->computed / P, end = (page + 1) * P;
    if (end >= s->length()) continue;  // no full page left to share (the last position is computed anyway)
    const uint64_t h = prefix_hash(*s, page);
    for (const auto& other : running_) {
      for (Sequence* o : other->sequences()) {
        if (o->root_chain != s->root_chain || o->computed >= end || o->length() < end) continue;
        if (prefix_hash(*o, page) == h) return true;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Memory pressure
// ---------------------------------------------------------------------------------------------
bool Scheduler::reclaim_idle() {
  Sequence* victim = nullptr;
  for (Sequence* s : sequences_) {
    if (s->running || s->pages.empty()) continue;
    if (!victim || s->last_used < victim->last_used) victim = s;
  }
  if (!victim) return false;
  kv_.release(*victim);
  return true;
}

void Scheduler::preempt(Request& r) {
  if (r.kind == Request::Kind::Generate) drop_drafts(static_cast<GenerateRequest&>(r));  // drafted again after it resumes
  for (Sequence* s : r.sequences()) {
    kv_.release(*s);
    s->running = false;
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [&](const std::shared_ptr<Request>& x) { return x.get() == &r; }),
                 running_.end());
  // Back to the front: it resumes before anything newer is admitted.
  std::shared_ptr<Request> self;
  for (Sequence* s : r.sequences()) {
    if (!s->queue.empty() && s->queue.front().get() == &r) self = s->queue.front();
  }
  r.phase = Request::Phase::Waiting;
  waiting_.insert(waiting_.begin(), self);
  ++queued_;
  ++counters_.preemptions;
}

// ---------------------------------------------------------------------------------------------
// The step
// ---------------------------------------------------------------------------------------------
void Scheduler::step() {
  ++step_counter_;
  cancel_requests();

  int64_t budget = opts_.max_step_tokens;
  std::vector<Unit> units;
  if (mtp_on()) {
    int64_t generating = 0;
    for (const auto& r : running_) generating += r->kind == Request::Kind::Generate ? 1 : 0;
    draft_now_ = generating <= opts_.spec.max_batch;
    // Requests about to draft (or to read the MTP layer's logits) need their pairs up to date; the
    // others' gaps (no fill while idle) are left until they draft again.
    for (const auto& r : running_) {
      bool wants = drafts_now(*r) || opts_.spec.fill_while_idle;
      if (r->kind == Request::Kind::Evaluate) {
        for (const auto& item : static_cast<EvaluateRequest&>(*r).items) wants = wants || item.draft_logits;
      }
      for (Sequence* s : r->sequences()) {
        if (wants) repair_mtp(*s);
      }
    }
  }
  // Running requests: decodes (one token, or one plus its drafts) first, then prefill chunks, each in
  // admission order.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& r : running_) {
      const std::vector<Sequence*> seqs = r->sequences();
      const int64_t drafts = r->kind == Request::Kind::Generate ? static_cast<GenerateRequest&>(*r).drafts : 0;
      for (size_t i = 0; i < seqs.size() && budget > 0; ++i) {
        int64_t left = remaining(*seqs[i]);
        if (left == 0 || (pass == 0) != (left == 1 + drafts)) continue;
        if (drafts > 0 && left > budget) {  // a verification is all or nothing: verify none, decode one
          drop_drafts(static_cast<GenerateRequest&>(*r));
          left = remaining(*seqs[i]);
        }
        const int64_t n = std::min(left, budget);
        units.push_back({r.get(), seqs[i], i, n});
        budget -= n;
      }
    }
  }
  // Pages, in admission order; when the pool runs dry, idle sessions give theirs back first, then the
  // newest running requests are preempted (they have not been given pages this step yet).
  bool preempted = false;
  std::vector<Request*> allocated;
  for (size_t ri = 0; ri < running_.size(); ++ri) {
    Request* r = running_[ri].get();
    bool fits = true;
    for (const Unit& u : units) {
      if (u.request != r) continue;
      for (;;) {
        bool ok = false;
        const Status st = kv_.reserve(*u.seq, u.seq->computed + u.n, &ok);
        if (!st.is_ok()) return shutdown(st);
        if (ok) break;
        if (reclaim_idle()) continue;
        Request* victim = running_.back().get();
        preempted = true;
        preempt(*victim);
        if (victim == r) {
          fits = false;
          break;
        }
      }
      if (!fits) break;
    }
    if (!fits) break;  // r was the newest left: everything after it is preempted too
  }
  units.erase(std::remove_if(units.begin(), units.end(), [](const Unit& u) { return u.request->phase != Request::Phase::Running; }),
              units.end());
  budget = opts_.max_step_tokens;
  for (const Unit& u : units) budget -= u.n;

  // Admission, in arrival order, while the budget and the concurrency limit allow (not in a step that
  // had to preempt: the pool is full).
  for (size_t wi = 0; !preempted && wi < waiting_.size() && budget > 0 && int64_t(running_.size()) < opts_.max_running;) {
    std::shared_ptr<Request> r = waiting_[wi];
    if (!r->prepared) {
      const Status st = prepare(*r);
      if (!st.is_ok()) {
        finish(*r, st);
        continue;  // finish() removed it from waiting_
      }
    }
    // Whatever the prefix cache holds of its tokens is attached (at least the last position is
    // computed again: its logits are the point; all-logits evaluations recompute every new position).
    for (size_t i = 0; i < r->sequences().size(); ++i) {
      Sequence& s = *r->sequences()[i];
      int64_t limit = s.length() - 1;
      if (r->kind == Request::Kind::Evaluate) {
        const auto& item = static_cast<EvaluateRequest&>(*r).items[i];
        if (item.all_logits) limit = item.logits_from;
      }
      kv_.attach_cached(s, limit);
    }
    if (should_wait(*r)) {
      ++wi;
      continue;
    }
    // (After the wait check, which looks at page-aligned lengths: the repair computes the last
    // attached position again for the MTP layer.)
    if (mtp_on()) {
      for (Sequence* s : r->sequences()) repair_mtp(*s);
    }
    // Admit: its first chunk must get pages from free, cached or idle pages (never by preempting).
    for (Sequence* s : r->sequences()) s->running = true;
    std::vector<Unit> mine;
    bool ok = true;
    for (size_t i = 0; i < r->sequences().size() && ok; ++i) {
      Sequence* s = r->sequences()[i];
      const int64_t n = std::min(remaining(*s), budget);
      if (n == 0) continue;
      for (;;) {
        const Status st = kv_.reserve(*s, s->computed + n, &ok);
        if (!st.is_ok()) return shutdown(st);
        if (ok || !reclaim_idle()) break;
      }
      if (ok) {
        mine.push_back({r.get(), s, i, n});
        budget -= n;
      }
    }
    if (!ok) {
      for (Sequence* s : r->sequences()) {
        s->running = false;
        kv_.trim(*s);
      }
      break;  // the pool is full: later arrivals wait too
    }
    if (!r->admitted.time_since_epoch().count()) {
      // First admission: the request's tokens already computed (kept from the session's cache or
      // found in the prefix cache) are its cache hits.
      r->admitted = Clock::now();
      if (r->kind == Request::Kind::Generate) {
        auto& g = static_cast<GenerateRequest&>(*r);
        g.result.cached_tokens = std::max<int64_t>(0, g.sequence->computed - (g.params.reuse_prefix ? 0 : g.rollback_to));
        g.result.queue_ms = ms_between(g.submitted, g.admitted);
        counters_.prefix_cache_hits += uint64_t(g.result.cached_tokens);
      } else {
        for (const auto& item : static_cast<EvaluateRequest&>(*r).items) {
          counters_.prefix_cache_hits += uint64_t(std::max<int64_t>(0, item.sequence->computed - item.before));
        }
      }
    }
    waiting_.erase(waiting_.begin() + long(wi));
    r->phase = Request::Phase::Running;
    --queued_;
    running_.push_back(r);
    units.insert(units.end(), mine.begin(), mine.end());
  }

  if (units.empty()) {
    refresh_stats();
    return;
  }

  // The plan: each unit's rows, and the logit rows its request wants.
  StepPlan plan;
  std::vector<std::pair<Unit*, int64_t>> owners;  // (unit, position) per logit row
  for (Unit& u : units) {
    Sequence& s = *u.seq;
    const StepPlan::Sequence ps = plan_entry(s, plan.rows(), u.n, s.computed);
    u.start = s.computed;
    u.row_begin = ps.row_begin;
    const int64_t drafts = u.request->kind == Request::Kind::Generate ? static_cast<GenerateRequest*>(u.request)->drafts : 0;
    for (int64_t j = 0; j < u.n; ++j) {
      const int64_t pos = s.computed + j;
      plan.tokens.push_back(s.tokens[size_t(pos)]);
      plan.positions.push_back(int32_t(pos));
      bool logits = false;
      if (u.request->kind == Request::Kind::Evaluate) {
        const auto& item = static_cast<EvaluateRequest*>(u.request)->items[u.item];
        logits = item.all_logits ? pos >= item.logits_from : pos + 1 == s.length();
      } else {
        // The last token's row, and with drafts every row from the last verified token on.
        logits = pos + 1 >= s.length() - drafts && wants_token(*u.request);
      }
      if (logits) {
        plan.logit_rows.push_back(ps.row_begin + j);
        owners.push_back({&u, pos});
      }
    }
    plan.sequences.push_back(ps);
  }
  plan.keep_hidden = mtp_on();  // the MTP layer reads every row's hidden state
  // Token selection: on the backend when every logit row is a generation's (greedy: argmax only;
  // sampled: the backend may sample on the device), else on the host from downloaded logits.
  bool all_generate = !owners.empty(), all_greedy = true, all_device = true;
  for (const auto& o : owners) {
    if (o.first->request->kind != Request::Kind::Generate) {
      all_generate = false;
      break;
    }
    const auto& g = *static_cast<GenerateRequest*>(o.first->request);
    all_greedy = all_greedy && g.greedy_only;
    all_device = all_device && runner_.samples_on_device(g.params.sampling);
  }
  step_samples_.clear();
  if (all_generate && all_greedy) {
    plan.greedy_tokens = true;
  } else if (all_generate && all_device) {
    // Each row's draw (keyed by the position it samples) and penalty history, as one-token steps would use them.
    for (const auto& o : owners) {
      auto& g = *static_cast<GenerateRequest*>(o.first->request);
      // Row `pos` verifies the drafts before it: they count as generated in its penalties.
      const Sequence& s = *g.sequence;
      const int64_t first = s.length() - 1 - g.drafts;
      step_samples_.push_back(sample_request_for(g, o.second, s.tokens.data() + first + 1, size_t(o.second - first)));
      if (g.matcher) step_samples_.back().allowed = device_mask(g, o.second - first, s.tokens.data() + first + 1, g.drafts);
    }
    plan.sample_requests = &step_samples_;
  }
  const bool host_select = !plan.greedy_tokens && !plan.sample_requests;

  // The step's requests stay alive until it is done: finishing one hands it to its caller, who may
  // free it at once from another thread.
  std::vector<Request*> in_step;
  std::vector<std::shared_ptr<Request>> alive;
  for (const Unit& u : units) {
    if (std::find(in_step.begin(), in_step.end(), u.request) != in_step.end()) continue;
    in_step.push_back(u.request);
    for (const auto& x : running_) {
      if (x.get() == u.request) alive.push_back(x);
    }
  }
  // The step stops between layers only when every request in it was aborted (one caller's abort must
  // not cost the others their step).
  auto cancelled = [&in_step] {
    for (Request* r : in_step) {
      if (!r->cancelled()) return false;
    }
    return true;
  };
  const Status st = runner_.run_step(plan, cancelled, &out_);
  ++counters_.steps;
  if (!st.is_ok()) {
    for (const Unit& u : units) kv_.trim(*u.seq);
    if (st.code() == ErrorCode::EngineDead) return shutdown(st);
    if (st.code() == ErrorCode::Aborted) {
      cancel_requests();
    } else {
      for (auto& r : alive) finish(*r, st);
    }
    refresh_stats();
    return;
  }
  collect(plan, units, owners, out_, host_select);
  if (mtp_on()) mtp_pass(units);
  for (const Unit& u : units) kv_.publish(*u.seq);  // after the MTP pass: published pages hold its KV too
  complete(units);
  refresh_stats();
}

void Scheduler::collect(const StepPlan& plan, const std::vector<Unit>& units, const std::vector<std::pair<Unit*, int64_t>>& owners,
                        const StepOutput& out, bool host_select) {
  const auto now = Clock::now();
  uint64_t prompt_rows = 0, generated = 0;
  for (const Unit& u : units) {
    Sequence& s = *u.seq;
    if (u.request->kind == Request::Kind::Generate) {
      const auto& g = *static_cast<GenerateRequest*>(u.request);
      prompt_rows += uint64_t(std::max<int64_t>(0, std::min(s.computed + u.n, g.prompt_end) - s.computed));
    } else {
      prompt_rows += uint64_t(u.n);
    }
    s.computed += u.n;
    s.last_used = step_counter_;
  }
  // Logit rows in plan order: evaluations copy their logits, generations choose their next token.
  std::vector<std::shared_ptr<Request>> touched;
  for (size_t o = 0; o < owners.size(); ++o) {
    Unit& u = *owners[o].first;
    const int64_t pos = owners[o].second;
    if (u.request->kind == Request::Kind::Evaluate) {
      auto& item = static_cast<EvaluateRequest*>(u.request)->items[u.item];
      const size_t V = size_t(vocab_);
      if (item.logits.empty()) item.logits.assign((item.all_logits ? item.tokens.size() : 1) * V, 0.0f);
      const size_t dst = item.all_logits ? size_t(pos - item.before) : 0;
      std::copy_n(out.logits.data() + o * V, V, item.logits.data() + dst * V);
      item.logits_from = std::max(item.logits_from, pos + 1);
      continue;
    }
    // A generation's rows are consecutive: its last token's, then one per draft.
    size_t n_rows = 1;
    while (o + n_rows < owners.size() && owners[o + n_rows].first == &u) ++n_rows;
    auto& g = *static_cast<GenerateRequest*>(u.request);
    const size_t before = g.result.tokens.size();
    emit_generation(g, u, o, n_rows, plan, out, host_select);
    generated += uint64_t(g.result.tokens.size() - before);
    o += n_rows - 1;
  }
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    rates_.add(now, prompt_rows, generated);
  }
  counters_.prompt_tokens += prompt_rows;
  counters_.generation_tokens += generated;
}

void Scheduler::complete(const std::vector<Unit>& units) {
  // Evaluations whose every item is computed are done; so are prompt-only generations.
  std::vector<Request*> seen;
  for (const Unit& u : units) {
    Request* r = u.request;
    if (r->done() || std::find(seen.begin(), seen.end(), r) != seen.end()) continue;
    seen.push_back(r);
    bool all_computed = true;
    for (Sequence* s : r->sequences()) all_computed = all_computed && s->computed == s->length();
    if (!all_computed) continue;
    if (r->kind == Request::Kind::Evaluate) {
      finish(*r, Status::ok());
    } else if (r->kind == Request::Kind::Generate && !wants_token(*r)) {
      static_cast<GenerateRequest&>(*r).result.finish_reason = "length";  // maxTokens 0: the prompt only
      finish(*r, Status::ok());
    }
  }
}

void Scheduler::on_token(GenerateRequest& g, int32_t token, TokenLogprobs lp, Status st, bool grammar_state) {
  if (!st.is_ok()) return finish(g, st);
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    if (g.result.tokens.empty()) ttft_.add(ms_between(g.submitted, now));
    else itl_.add(ms_between(g.last_token, now));
  }
  if (g.result.tokens.empty()) {
    g.first_token = now;
    g.result.prefill_ms = ms_between(g.admitted, now);
  }
  g.last_token = now;
  GeneratedToken t;
  t.id = token;
  t.logprobs = std::move(lp);
  g.result.tokens.push_back(t);
  if (g.sink) g.sink(g.result.tokens.back());
  Sequence& s = *g.sequence;
  const char* reason = nullptr;
  if (g.params.is_stop_token(token)) reason = "stop";
  else if (grammar_state && g.matcher && !g.matcher->can_continue()) reason = "grammar";  // complete: nothing may follow
  else if (int64_t(g.result.tokens.size()) >= g.params.max_tokens) reason = "length";
  else if (s.length() + 1 > s.capacity()) reason = "length";  // a full context ends the run
  if (reason) {
    g.result.finish_reason = reason;
    return finish(g, Status::ok());
  }
  s.tokens.push_back(token);  // computed in the next step
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------
void Scheduler::refresh_stats() {
  counters_.running = int64_t(running_.size());
  counters_.waiting = queued_;
  const KvPool::Counts c = kv_.pool().counts();
  counters_.kv_pages_total = kv_.pool().n_pages();
  counters_.kv_pages_used = c.held;
  counters_.kv_pages_cached = c.cached;
  counters_.kv_page_tokens = kv_.page_tokens();
  counters_.evictions = uint64_t(c.evictions);
  counters_.speculation_active = mtp_fill_;
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = counters_;
}

ServingStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  ServingStats s = snapshot_;
  s.time_to_first_token_ms = ttft_.percentiles();
  s.inter_token_latency_ms = itl_.percentiles();
  const auto r = const_cast<RateWindow&>(rates_).rates(Clock::now());
  s.prompt_tokens_per_second = r.first;
  s.generation_tokens_per_second = r.second;
  return s;
}

}  // namespace glm
