// Shared native state behind the JS objects: a model with its engine thread (Executor) and the
// sessions created on it, and the registry of abort flags of in-flight requests (so dispose can stop
// them). Glue only.
//
// The engine thread runs jobs in order: each request's submission is a job, and while the scheduler
// has work one "step" job is queued at a time, re-posting itself after each step. Submissions, session
// disposals and resets posted meanwhile therefore take effect between steps.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "addon/grammar_store.h"
#include "engine/executor.h"
#include "engine/model.h"

namespace glm::addon {

using AbortToken = std::shared_ptr<std::atomic<bool>>;

struct SessionState;

struct ModelHost {
  std::unique_ptr<Model> model;
  std::atomic<bool> disposed{false};
  std::atomic<uint64_t> scratch_bytes{0};  // refreshed after every step (read by info() on the JS thread)
  std::atomic<uint64_t> kv_bytes{0};
  std::atomic<uint64_t> graph_captures{0}, graph_replays{0}, graph_failures{0};  // (refreshed with the memory)
  int64_t reported_external_bytes = 0;     // what V8 was last told (JS thread only)
  bool step_posted = false;                // engine thread only

  std::mutex mu;  // guards jobs
  struct InFlight { std::vector<const SessionState*> owners; AbortToken token; };
  std::vector<InFlight> jobs;

  void track(std::vector<const SessionState*> owners, const AbortToken& token) {
    std::lock_guard<std::mutex> lock(mu);
    jobs.push_back({std::move(owners), token});
  }
  void untrack(const AbortToken& token) {
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].token == token) { jobs.erase(jobs.begin() + long(i)); break; }
    }
  }
  // Sets the abort flag of every in-flight request touching `owner` (all of them when owner is null),
  // so a forward step holding only such requests stops between layers.
  void abort_jobs(const SessionState* owner) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& j : jobs) {
      bool hit = !owner;
      for (const SessionState* o : j.owners) hit = hit || o == owner;
      if (hit) j.token->store(true);
    }
  }
  void refresh_memory() {
    if (!model) return;
    scratch_bytes = model->scratch_bytes();
    kv_bytes = model->kv_bytes();
    const Backend::GraphCounters g = model->backend().graph_counters();
    graph_captures = g.captures, graph_replays = g.replays, graph_failures = g.failures;
  }

  GrammarStore grammars;  // constrained decoding's compiled grammars (any thread)

  // Declared last: destroyed first, so the executor is drained before the model goes away.
  Executor executor;
};

// Keeps the engine stepping while the scheduler has work (engine thread): at most one step job queued.
inline void pump(const std::shared_ptr<ModelHost>& host) {
  if (host->step_posted || !host->model || !host->model->has_work()) return;
  host->step_posted = true;
  host->executor.post([host] {
    host->step_posted = false;
    if (!host->model) return;
    host->model->step();
    host->refresh_memory();
    pump(host);
  });
}

struct SessionState {
  std::unique_ptr<Sequence> sequence;  // touched only on the engine thread after creation
  std::atomic<bool> disposed{false};
  // Tokens in the session's context after the last request that touched it, published on the engine
  // thread before that request's promise settles (so JS reads a final length in its handlers).
  std::atomic<int64_t> length{0};
  void publish_length() { length = sequence ? sequence->length() : 0; }
};

// Per-environment data: constructors of the wrapped classes (two addon instances, e.g. in worker
// threads, never share them).
struct AddonData {
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference session_ctor;
  Napi::FunctionReference abort_ctor;
};

// Runs the body of a thread-safe function's callback. Such a callback can run while its environment is
// shutting down (a worker being terminated): N-API calls then fail and node-addon-api throws, and an
// exception escaping into Node's event loop aborts the whole process. Nothing can reach a dying
// environment anyway, so the failure is dropped.
template <class F>
void guarded_js(F&& body) noexcept {
  try {
    body();
  } catch (...) {
  }
}

// A JS Error with the stable code of a Status (mapped to a GlmError subclass in lib/errors.ts).
inline Napi::Error status_error(Napi::Env env, const Status& s) {
  Napi::Error e = Napi::Error::New(env, s.message());
  e.Value().Set("code", Napi::String::New(env, error_code_name(s.code())));
  return e;
}

}  // namespace glm::addon
