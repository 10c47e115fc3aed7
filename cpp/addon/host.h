// Shared native state behind the JS objects: a model with its executor thread, the sessions created
// on it, and the registry of abort flags of in-flight jobs (so dispose can stop them). Glue only.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/executor.h"
#include "engine/model.h"

namespace glm::addon {

using AbortToken = std::shared_ptr<std::atomic<bool>>;

struct SessionState;

struct ModelHost {
  std::unique_ptr<Model> model;
  std::atomic<bool> disposed{false};
  std::atomic<uint64_t> scratch_bytes{0};  // refreshed after every job (read by info() on the JS thread)
  std::atomic<uint64_t> kv_bytes{0};
  std::atomic<uint64_t> graph_captures{0}, graph_replays{0}, graph_failures{0};  // (refreshed with the memory)
  int64_t reported_external_bytes = 0;     // what V8 was last told (JS thread only)

  std::mutex mu;  // guards jobs
  struct InFlight { const SessionState* owner; AbortToken token; };
  std::vector<InFlight> jobs;

  void track(const SessionState* owner, const AbortToken& token) {
    std::lock_guard<std::mutex> lock(mu);
    jobs.push_back({owner, token});
  }
  void untrack(const AbortToken& token) {
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].token == token) { jobs.erase(jobs.begin() + long(i)); break; }
    }
  }
  // Sets the abort flag of every in-flight job of `owner` (all jobs when owner is null).
  void abort_jobs(const SessionState* owner) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& j : jobs) {
      if (!owner || j.owner == owner) j.token->store(true);
    }
  }
  void refresh_memory() {
    if (!model) return;
    scratch_bytes = model->scratch_bytes();
    kv_bytes = model->kv_bytes();
    const Backend::GraphCounters g = model->backend().graph_counters();
    graph_captures = g.captures, graph_replays = g.replays, graph_failures = g.failures;
  }

  // Declared last: destroyed first, so the executor is drained before the model goes away.
  Executor executor;
};

struct SessionState {
  std::unique_ptr<Sequence> sequence;  // touched only on the executor thread after creation
  std::atomic<bool> disposed{false};
  // Tokens in the cache after the last job that touched it, published for the JS thread (a job that
  // fails half way, e.g. an aborted generation, still leaves a consistent, known length).
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

// A JS Error with the stable code of a Status (mapped to a GlmError subclass in lib/errors.ts).
inline Napi::Error status_error(Napi::Env env, const Status& s) {
  Napi::Error e = Napi::Error::New(env, s.message());
  e.Value().Set("code", Napi::String::New(env, error_code_name(s.code())));
  return e;
}

}  // namespace glm::addon
