// A loaded model: config, bound weights, a backend, its KV page pool and the scheduler that runs every
// session's requests in shared forward steps. Not thread-safe by itself: the addon runs every call on
// the model's engine thread (Executor); stats() may be read from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/forward.h"
#include "engine/kv_manager.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace glm {

class Checkpoint;

enum class BackendChoice { Cpu, Cuda, Auto };

struct LoadOptions {
  BackendChoice backend = BackendChoice::Cpu;  // Auto: CUDA when usable, else CPU (Model::backend_reason says why)
  int threads = 0;          // CPU threads (0 = hardware concurrency)
  bool prefetch = true;     // read every weight page at load (progress-reported) instead of on first use
  // KV page pool, shared by every session of the model (kv_format.h).
  uint64_t kv_cache_bytes = 0;   // 0: the backend's default (CPU: half the available memory, at most 64
                                 // full contexts; CUDA: what is left of the device after the rest)
  int64_t kv_cache_tokens = 0;   // or the pool size in positions (rounded up to whole pages)
  KvType kv_type = KvType::BF16;
  int64_t kv_page_tokens = 16;   // positions per page: the prefix cache's granularity
  bool prefix_cache = true;      // share full pages of equal prefixes across sessions
  // Scheduler (scheduler.h).
  int64_t max_step_rows = 0;     // token budget of a forward step (0: CPU 256, CUDA 512); longer prompts are split
  int64_t max_running = 64;      // requests computing at once (maxConcurrentRequests)
  int64_t max_queued = 1024;     // requests waiting beyond those (maxQueuedRequests); more is QueueFull
  bool cuda_graphs = true;      // CUDA: replay decode steps as CUDA graphs (false: every step eager, to compare)
  bool cuda_device_sampling = true;  // CUDA: sampled generation chooses tokens on the device (false: on the host, to compare)
  int prefix_hash_bits = 64;     // tests: fewer bits force prefix-cache hash collisions
  // Speculative decoding with the checkpoint's MTP layer: drafts per round (-1: the backend's default
  // where the model has an MTP layer, 0: off, 1..8) and the adaptive policy's knobs (speculation.h).
  int64_t draft_tokens = -1;
  int64_t spec_max_batch = -1;        // -1: the default
  double spec_min_acceptance = -1;    // -1: the default
};

// stage: "open" (headers validated, shards mapped), "prefetch" (weight pages read); done/total in bytes.
using ProgressFn = std::function<void(const char* stage, uint64_t done, uint64_t total)>;

// One session's part of a synchronous Model::evaluate (tests, benchmarks).
struct EvalRequest {
  Sequence* sequence = nullptr;
  std::vector<int32_t> tokens;
  bool all_logits = false;     // logits after every token, else only after the last
  std::vector<float> logits;   // out: [n or 1, vocab]
  bool draft_logits = false;   // also the MTP layer's logits (speculation on): request.h EvaluateRequest::Item
  std::vector<float> drafts;   // out: [n - 1 or n, vocab]
};

class Model final : public StepRunner {
 public:
  static Status load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                     const std::atomic<bool>* cancel, std::unique_ptr<Model>* out);
  ~Model() override;

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return weights_; }
  const char* backend_name() const { return backend_->name(); }
  // Why this backend was chosen ("requested", or why 'auto' fell back to the CPU).
  const std::string& backend_reason() const { return backend_reason_; }
  int threads() const { return threads_; }
  std::string weight_dtype() const;
  uint64_t mapped_weight_bytes() const { return weights_.mapped_bytes; }
  uint64_t owned_weight_bytes() const { return weights_.owned_bytes; }
  uint64_t scratch_bytes() const;
  // KV bytes held by sessions (pages held x page bytes; cached prefix pages nobody holds are not
  // counted: they are reclaimable).
  uint64_t kv_bytes() const;  // (engine thread)
  const KvPoolSpec& kv_pool() const { return backend_->kv_pool(); }
  const SchedulerOptions& scheduler_options() const { return sched_opts_; }
  bool kv_prefix_cache() const { return opts_.prefix_cache; }
  Backend& backend() { return *backend_; }  // (tests and benchmarks: backend statistics)

  // Contexts longer than max_position_embeddings are refused (the model never saw such positions).
  // A sequence holds no pages until its first request runs.
  Status create_sequence(int64_t context_length, std::unique_ptr<Sequence>* out);

  // --- the scheduler (engine thread) -------------------------------------------------------------
  // Takes a request (token ids are checked here); it completes through its on_done.
  void submit(std::shared_ptr<Request> r);
  bool has_work() const { return scheduler_->has_work(); }
  // One scheduling round and forward step; call while has_work().
  void step();
  // Ends the sequence's requests (Disposed) and returns its pages; free the Sequence afterwards.
  void dispose_sequence(Sequence* s);
  // Ends every request (Disposed) before the model goes away.
  void shutdown();
  ServingStats stats() const { return scheduler_->stats(); }

  // --- synchronous use on the calling thread (tests, benchmarks) ---------------------------------
  // Appends each request's tokens to its sequence in shared forward steps and fills its logits.
  // All or nothing: on any error (bad token, overflow, abort) every sequence is left as before.
  Status evaluate(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel);
  // Evaluates `prompt` on `seq` and samples up to max_tokens tokens (request.h GenerateRequest).
  Status generate(Sequence* seq, const std::vector<int32_t>& prompt, const GenerateParams& params,
                  const std::atomic<bool>* cancel, const std::atomic<bool>* stop, const TokenSink& sink,
                  GenerateResult* result);
  // Keeps the sequence's first n tokens (tests).
  void truncate_sequence(Sequence* s, int64_t n) { kv_->truncate(*s, n); }
  void release_sequence(std::unique_ptr<Sequence>& seq);
  // Debug hook (DESIGN.md rule 10) applied to every later step; empty to remove.
  void set_activation_hook(ActivationHook hook) { hook_ = std::move(hook); }

  // StepRunner
  Status run_step(const StepPlan& plan, const std::function<bool()>& cancelled, StepOutput* out) override;
  bool samples_on_device(const SamplingParams& p) const override { return backend_->samples_on_device(p); }
  Status run_mtp(const StepPlan& plan, const std::vector<int64_t>& source_rows, bool chained,
                 const std::function<bool()>& cancelled, StepOutput* out) override;
  // Drafts per round for requests that do not choose (0: speculative decoding is off), and why.
  int64_t draft_tokens() const { return sched_opts_.spec.draft_tokens; }
  const std::string& speculation_reason() const { return speculation_reason_; }

 private:
  Model() = default;
  Status create_backend(const std::atomic<bool>* cancel);
  Status check_tokens(const std::vector<int32_t>& tokens) const;
  Status run_to_completion(std::shared_ptr<Request> r, const std::atomic<bool>* cancel);

  ModelConfig cfg_;
  LoadOptions opts_;
  int threads_ = 1;
  std::unique_ptr<Checkpoint> checkpoint_;  // owns the mappings the weights point into
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  std::string backend_reason_;
  std::string speculation_reason_;
  Act trunk_hidden_, mtp_hidden_;  // the last trunk step's final-norm rows and MTP step's output (MTP inputs)
  SchedulerOptions sched_opts_;
  std::unique_ptr<KvManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;  // after kv_: destroyed first
  ActivationHook hook_;
};

}  // namespace glm
