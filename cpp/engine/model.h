// A loaded model: config, bound weights, a backend, and the operations sessions run on it. Not
// thread-safe by itself: the addon runs every call on the model's Executor.
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
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace glm {

class Checkpoint;

enum class BackendChoice { Cpu, Cuda, Auto };

struct LoadOptions {
  BackendChoice backend = BackendChoice::Cpu;  // Auto: CUDA when usable, else CPU (Model::backend_reason says why)
  uint64_t kv_cache_bytes = 0;  // CUDA: bytes of the device KV page pool (0: most of the free memory)
  int threads = 0;          // CPU threads (0 = hardware concurrency)
  bool prefetch = true;     // read every weight page at load (progress-reported) instead of on first use
  int64_t max_step_rows = 512;  // rows per forward step; longer prompts are split (bounds scratch memory)
  bool cuda_graphs = true;      // CUDA: replay decode steps as CUDA graphs (false: every step eager, to compare)
  bool cuda_device_sampling = true;  // CUDA: sampled generation chooses tokens on the device (false: on the host, to compare)
  int64_t cuda_page_tokens = 0; // CUDA: positions per KV page (0: 256); tests shrink it to cross pages cheaply
};

// stage: "open" (headers validated, shards mapped), "prefetch" (weight pages read); done/total in bytes.
using ProgressFn = std::function<void(const char* stage, uint64_t done, uint64_t total)>;

// A session's state on the engine side: its KV cache and the tokens the cache holds.
class Sequence {
 public:
  explicit Sequence(std::unique_ptr<KvStore> store) : cache(std::move(store)) {}
  std::unique_ptr<KvStore> cache;  // made by the model's backend
  std::vector<int32_t> tokens;
  int64_t length() const { return int64_t(tokens.size()); }
  void truncate(int64_t n) {
    if (n < length()) tokens.resize(size_t(n));
    cache->truncate(n);
  }
};

struct EvalRequest {
  Sequence* sequence = nullptr;
  std::vector<int32_t> tokens;
  bool all_logits = false;     // logits after every token, else only after the last
  // Only the greedy token (argmax, sampler.cc's rule) after the last token is wanted, not the logits:
  // the backend may select it on the device and skip the logits download (logits then stay empty).
  bool greedy_only = false;
  // Or the token is chosen by this request (temperature, filters, penalties, logprobs; not with
  // all_logits): the backend may choose it on the device (Backend::download_sampled).
  const SampleRequest* sample = nullptr;
  std::vector<float> logits;   // out: [n or 1, vocab] (empty with greedy_only or sample)
  int32_t greedy_token = -1;   // out with greedy_only / sample: the chosen token; -1 when every logit is NaN
                               // (sample: or no candidate is finite)
  TokenLogprobs sample_logprobs;  // out with sample and params.top_logprobs >= 0
};

struct GenerateParams {
  int64_t max_tokens = 0;
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;
  // false: the prompt is appended after what the sequence holds. true: the prompt is the whole
  // context; the longest common prefix with the sequence's cache is kept and only the rest evaluated.
  bool reuse_prefix = false;
};

struct GeneratedToken {
  int32_t id = 0;
  TokenLogprobs logprobs;  // filled when sampling.top_logprobs >= 0
};

// Receives each token as it is chosen (on the executor thread; must not block for long).
using TokenSink = std::function<void(const GeneratedToken&)>;

struct GenerateResult {
  std::vector<GeneratedToken> tokens;  // generated tokens (a stop token included when one ended it)
  // "stop" (a stop token), "length" (max_tokens or a full context), "stop_requested" (the caller's
  // stop flag, e.g. a stop string matched in JS)
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;           // prompt tokens served from the sequence's cache
  double prefill_ms = 0, decode_ms = 0;
};

class Model {
 public:
  static Status load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                     const std::atomic<bool>* cancel, std::unique_ptr<Model>* out);
  ~Model();

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
  uint64_t kv_bytes() const { return kv_bytes_.load(); }
  Backend& backend() { return *backend_; }  // (tests and benchmarks: backend statistics)

  // Contexts longer than max_position_embeddings are refused (the model never saw such positions).
  Status create_sequence(int64_t context_length, std::unique_ptr<Sequence>* out);
  void release_sequence(std::unique_ptr<Sequence>& seq);

  // Appends each request's tokens to its sequence in shared forward steps and fills its logits.
  // All or nothing: on any error (bad token, overflow, abort) every sequence is left as before.
  Status evaluate(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel,
                  const ActivationHook* hook = nullptr);

  // Evaluates `prompt` on `seq` and samples up to max_tokens tokens, handing each to `sink`. `stop`
  // ends the run early without an error. Tokens evaluated before an abort stay in the sequence (it
  // remains consistent and usable); the last sampled token is not evaluated (nothing needs its logits).
  Status generate(Sequence* seq, const std::vector<int32_t>& prompt, const GenerateParams& params,
                  const std::atomic<bool>* cancel, const std::atomic<bool>* stop, const TokenSink& sink,
                  GenerateResult* result);

 private:
  Model() = default;
  Status create_backend(const std::atomic<bool>* cancel);
  Status check_tokens(const std::vector<int32_t>& tokens) const;
  Status run_steps(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel, const ActivationHook* hook);

  ModelConfig cfg_;
  LoadOptions opts_;
  int threads_ = 1;
  std::unique_ptr<Checkpoint> checkpoint_;  // owns the mappings the weights point into
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  std::string backend_reason_;
  std::atomic<uint64_t> kv_bytes_{0};
  std::vector<float> step_logits_;
  std::vector<int32_t> step_tokens_;
  std::vector<TokenLogprobs> step_logprobs_;  // (sampled steps)
  std::vector<SampleRequest> step_samples_;
};

}  // namespace glm
