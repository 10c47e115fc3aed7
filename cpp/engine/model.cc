#include "engine/model.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "engine/checkpoint.h"
#include "engine/kv_format.h"
#include "engine/cuda_factory.h"

namespace glm {

namespace {

bool cancelled(const std::atomic<bool>* c) { return c && c->load(std::memory_order_relaxed); }

// Reads one byte per page of every matrix so the first forward pass does not stall on page faults,
// reporting progress and honouring cancellation between matrices.
Status prefetch(const ModelWeights& w, const ProgressFn& progress, const std::atomic<bool>* cancel) {
  uint64_t total = 0, done = 0;
  for_each_matrix(w, [&](const Matrix& m) { total += m.bytes(); });
  volatile uint8_t sink = 0;
  Status status;
  auto last_report = std::chrono::steady_clock::now();
  for_each_matrix(w, [&](const Matrix& m) {
    if (!status.is_ok()) return;
    if (cancelled(cancel)) {
      status = Status::error(ErrorCode::Aborted, "model load aborted");
      return;
    }
    const auto* p = static_cast<const uint8_t*>(m.data);
    const uint64_t n = m.bytes();
    for (uint64_t i = 0; i < n; i += 4096) sink = sink + p[i];
    done += n;
    if (progress && std::chrono::steady_clock::now() - last_report > std::chrono::milliseconds(20)) {
      progress("prefetch", done, total);
      last_report = std::chrono::steady_clock::now();
    }
  });
  if (status.is_ok() && progress) progress("prefetch", total, total);
  return status;
}

}  // namespace

Model::~Model() {
  if (scheduler_) scheduler_->shutdown(Status::error(ErrorCode::Disposed, "model is disposed"));
}

Status Model::load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                   const std::atomic<bool>* cancel, std::unique_ptr<Model>* out) {
  if (opts.kv_page_tokens < 1 || opts.kv_page_tokens > 256) {
    return Status::error(ErrorCode::InvalidParam, "kvPageTokens must be in [1, 256], got " + std::to_string(opts.kv_page_tokens));
  }
  if (opts.max_step_rows < 0 || opts.max_step_rows > 65536) {
    return Status::error(ErrorCode::InvalidParam, "maxBatchTokens must be in [1, 65536], got " + std::to_string(opts.max_step_rows));
  }
  if (opts.max_running < 1 || opts.max_running > 65536) {
    return Status::error(ErrorCode::InvalidParam, "maxConcurrentRequests must be in [1, 65536], got " + std::to_string(opts.max_running));
  }
  if (opts.draft_tokens < -1 || opts.draft_tokens > 8) {
    return Status::error(ErrorCode::InvalidParam, "speculative.draftTokens must be in [1, 8], got " + std::to_string(opts.draft_tokens));
  }
  if (opts.max_queued < 0) {
    return Status::error(ErrorCode::InvalidParam, "maxQueuedRequests must be >= 0, got " + std::to_string(opts.max_queued));
  }
  std::unique_ptr<Model> m(new Model());
  m->opts_ = opts;
  m->threads_ = opts.threads > 0 ? opts.threads : std::max(1, int(std::thread::hardware_concurrency()));
  GLM_TRY(Checkpoint::open(
      dir,
      [&](uint64_t done, uint64_t total) {
        if (progress) progress("open", done, total);
        return !cancelled(cancel);
      },
      &m->checkpoint_));
  GLM_TRY(load_model_config(*m->checkpoint_, &m->cfg_));
  GLM_TRY(bind_weights(m->cfg_, *m->checkpoint_, &m->weights_));
  if (cpu::weights_stay_cached(m->weights_.mapped_bytes)) {
    for_each_matrix(m->weights_, [](Matrix& x) { x.cache_resident = true; });
  }
  if (opts.prefetch) GLM_TRY(prefetch(m->weights_, progress, cancel));
  if (cancelled(cancel)) return Status::error(ErrorCode::Aborted, "model load aborted");
  GLM_TRY(m->create_backend(cancel));
  m->kv_ = std::make_unique<KvManager>(*m->backend_, m->backend_->kv_pool(), opts.prefix_cache);
  m->kv_->pool().set_hash_bits_for_testing(opts.prefix_hash_bits);
  m->scheduler_ = std::make_unique<Scheduler>(*m, *m->kv_, m->sched_opts_, m->cfg_.vocab_size);
  *out = std::move(m);
  return Status::ok();
}

Status Model::create_backend(const std::atomic<bool>* cancel) {
  KvPoolRequest kv;
  kv.type = opts_.kv_type;
  kv.page_tokens = opts_.kv_page_tokens;
  kv.bytes = opts_.kv_cache_bytes;
  // kvCacheSize in tokens: the pool's bytes for that many positions of every KV layer the pages hold.
  const auto size_pool_in_tokens = [&] {
    if (opts_.kv_cache_tokens <= 0) return;
    const int64_t pages = (opts_.kv_cache_tokens + kv.page_tokens - 1) / kv.page_tokens;
    const int64_t layers = kv.layers > 0 ? kv.layers : cfg_.num_hidden_layers;
    kv.bytes = uint64_t(pages) * kv_page_bytes(kv.type, layers, cfg_.num_key_value_heads, cfg_.head_dim, kv.page_tokens);
  };
  size_pool_in_tokens();
  SpeculationConfig& spec = sched_opts_.spec;
  if (opts_.spec_max_batch >= 0) spec.max_batch = opts_.spec_max_batch;
  if (opts_.spec_min_acceptance >= 0) spec.min_acceptance = opts_.spec_min_acceptance;
  spec.fill_while_idle = cfg_.num_hidden_layers >= 32;  // the fill is then at most ~3% of a step (either backend)
  sched_opts_.max_running = opts_.max_running;
  sched_opts_.max_queued = opts_.max_queued;
  if (opts_.backend != BackendChoice::Cpu) {
    // Speculation on the CUDA backend: only when asked for, until scripts/gpu-check.sh has measured
    // where it pays on a GPU (its verification steps are not graphed yet). Then the pool holds the MTP
    // layer's KV and the backend uploads that layer.
    const bool cuda_spec = weights_.mtp && opts_.draft_tokens > 0;
    CudaBackendOptions co;
    if (cuda_spec) kv.layers = cfg_.num_hidden_layers + 1;
    size_pool_in_tokens();
    // A device step of 512 rows keeps the GEMMs busy; the activations are sized for the budget.
    co.max_step_rows = opts_.max_step_rows > 0 ? opts_.max_step_rows : 512;
    co.kv = kv;
    co.cancel = cancel;
    co.graphs = opts_.cuda_graphs;
    co.device_sampling = opts_.cuda_device_sampling;
    Status st = cuda_backend_available();
    if (st.is_ok()) st = create_cuda_backend(cfg_, weights_, co, &backend_);
    if (st.is_ok()) {
      backend_reason_ = opts_.backend == BackendChoice::Cuda ? "requested" : "auto: a usable CUDA device was found";
      sched_opts_.max_step_tokens = co.max_step_rows;
      spec.draft_tokens = cuda_spec ? opts_.draft_tokens : 0;
      speculation_reason_ = !weights_.mtp ? "off: the checkpoint has no MTP layer"
                            : cuda_spec   ? "requested"
                                          : "off by default on the CUDA backend until measured on a GPU (speculative: { draftTokens } turns it on)";
      return Status::ok();
    }
    // 'cuda' reports why it cannot run; 'auto' falls back to the CPU and keeps the reason (one line).
    if (opts_.backend == BackendChoice::Cuda || st.code() == ErrorCode::Aborted) return st;
    backend_reason_ = "auto: CPU because " + st.message();
    kv.layers = 0;  // (the CPU branch below sizes its own pool)
    size_pool_in_tokens();
  } else {
    backend_reason_ = "requested";
  }
  // 256 rows: a step of the bench model takes about a second on 2 cores, so running decodes wait at
  // most that long for a long prompt's chunk.
  sched_opts_.max_step_tokens = opts_.max_step_rows > 0 ? opts_.max_step_rows : 256;
  // Speculation: one draft per round by default (GLM's MTP layer was trained for one step; its later
  // drafts are rarely accepted, ../shared/reading/mtp.md §1.4). Its KV takes one more layer per page.
  if (!weights_.mtp) {
    spec.draft_tokens = 0;
    speculation_reason_ = "off: the checkpoint has no MTP layer";
  } else if (opts_.draft_tokens == 0) {
    spec.draft_tokens = 0;
    speculation_reason_ = "off: requested";
  } else {
    spec.draft_tokens = opts_.draft_tokens > 0 ? opts_.draft_tokens : 1;
    speculation_reason_ = opts_.draft_tokens > 0 ? "requested" : "default: the checkpoint has an MTP layer";
    kv.layers = cfg_.num_hidden_layers + 1;
    size_pool_in_tokens();
  }
  return cpu::CpuBackend::create(cfg_, threads_, kv, &backend_);
}

std::string Model::weight_dtype() const { return dtype_name(weights_.embed_tokens.dtype); }

uint64_t Model::scratch_bytes() const { return backend_->scratch_bytes(); }

Status Model::create_sequence(int64_t context_length, std::unique_ptr<Sequence>* out) {
  if (context_length < 1 || context_length > cfg_.max_position_embeddings) {
    return Status::error(ErrorCode::InvalidParam, "contextLength must be in [1, " +
                                                      std::to_string(cfg_.max_position_embeddings) +
                                                      "] (max_position_embeddings), got " +
                                                      std::to_string(context_length));
  }
  GLM_TRY(backend_->health());
  *out = std::make_unique<Sequence>(context_length);
  return Status::ok();
}

Status Model::check_tokens(const std::vector<int32_t>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size) {
      return Status::error(ErrorCode::InvalidToken, "token id " + std::to_string(tokens[i]) + " at index " +
                                                        std::to_string(i) + " is outside the vocabulary [0, " +
                                                        std::to_string(cfg_.vocab_size) + ")");
    }
  }
  return Status::ok();
}

void Model::submit(std::shared_ptr<Request> r) {
  Status st = backend_->health();  // a dead device fails fast, before anything is planned
  if (st.is_ok() && r->kind == Request::Kind::Evaluate) {
    for (const auto& item : static_cast<EvaluateRequest&>(*r).items) {
      if (!st.is_ok()) break;
      st = check_tokens(item.tokens);
    }
  } else if (st.is_ok() && r->kind == Request::Kind::Generate) {
    auto& g = static_cast<GenerateRequest&>(*r);
    if (g.prompt.empty()) st = Status::error(ErrorCode::InvalidParam, "generate needs at least one prompt token");
    if (st.is_ok()) st = check_tokens(g.prompt);
    if (st.is_ok()) st = check_tokens(g.params.stop_tokens);
  }
  if (!st.is_ok()) {
    r->status = st;
    r->phase = Request::Phase::Done;
    if (r->on_done) r->on_done(*r);
    return;
  }
  scheduler_->submit(std::move(r));
}

void Model::step() { scheduler_->step(); }

void Model::dispose_sequence(Sequence* s) { scheduler_->dispose(s); }

uint64_t Model::kv_bytes() const { return uint64_t(kv_->pool().counts().held) * backend_->kv_pool().page_bytes; }

void Model::shutdown() { scheduler_->shutdown(Status::error(ErrorCode::Disposed, "model is disposed")); }

void Model::release_sequence(std::unique_ptr<Sequence>& seq) {
  if (!seq) return;
  dispose_sequence(seq.get());
  seq.reset();
}

Status Model::run_step(const StepPlan& plan_in, const std::function<bool()>& cancelled, StepOutput* out) {
  StepPlan plan = plan_in;
  plan.activation_hook = bool(hook_);
  const size_t R = plan.logit_rows.size(), V = size_t(cfg_.vocab_size);
  out->logits.resize(R * V);
  out->tokens.assign(R, -1);
  out->logprobs.assign(R, TokenLogprobs());
  return forward_step(*backend_, cfg_, weights_, plan, out->logits.data(), &cancelled, hook_ ? &hook_ : nullptr,
                      out->tokens.data(), out->logprobs.data(), &trunk_hidden_);
}

Status Model::run_mtp(const StepPlan& plan_in, const std::vector<int64_t>& source_rows, bool chained,
                      const std::function<bool()>& cancelled, StepOutput* out) {
  StepPlan plan = plan_in;
  plan.activation_hook = bool(hook_);
  plan.hidden_rows = source_rows;
  const size_t R = plan.logit_rows.size(), V = size_t(cfg_.vocab_size);
  out->logits.resize(R * V);  // download_greedy may stage the rows here
  out->tokens.assign(R, -1);
  const Act source = chained ? mtp_hidden_ : trunk_hidden_;
  return mtp_step(*backend_, cfg_, weights_, plan, source, source_rows, out->logits.data(), out->tokens.data(), &cancelled,
                  hook_ ? &hook_ : nullptr, &mtp_hidden_);
}

Status Model::run_to_completion(std::shared_ptr<Request> r, const std::atomic<bool>* cancel) {
  // The caller's flag, shared without ownership (it outlives the call).
  if (cancel) r->cancel = Flag(Flag(), const_cast<std::atomic<bool>*>(cancel));
  Request* raw = r.get();
  submit(std::move(r));
  while (!raw->done() && has_work()) step();
  if (!raw->done()) return Status::error(ErrorCode::Internal, "a request was left unfinished");
  return raw->status;
}

Status Model::evaluate(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel) {
  auto r = std::make_shared<EvaluateRequest>();
  for (EvalRequest* e : requests) {
    EvaluateRequest::Item item;
    item.sequence = e->sequence;
    item.tokens = e->tokens;
    item.all_logits = e->all_logits;
    item.draft_logits = e->draft_logits;
    r->items.push_back(std::move(item));
  }
  std::shared_ptr<EvaluateRequest> keep = r;
  const Status st = run_to_completion(r, cancel);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i]->logits = st.is_ok() ? std::move(keep->items[i].logits) : std::vector<float>();
    requests[i]->drafts = st.is_ok() ? std::move(keep->items[i].draft_logits_out) : std::vector<float>();
  }
  return st;
}

Status Model::generate(Sequence* seq, const std::vector<int32_t>& prompt, const GenerateParams& params,
                       const std::atomic<bool>* cancel, const std::atomic<bool>* stop, const TokenSink& sink,
                       GenerateResult* result) {
  auto r = std::make_shared<GenerateRequest>();
  r->sequence = seq;
  r->prompt = prompt;
  r->params = params;
  if (stop) r->stop = Flag(Flag(), const_cast<std::atomic<bool>*>(stop));
  r->sink = sink;
  std::shared_ptr<GenerateRequest> keep = r;
  const Status st = run_to_completion(r, cancel);
  *result = std::move(keep->result);
  return st;
}

}  // namespace glm
