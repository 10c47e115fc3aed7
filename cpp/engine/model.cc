#include "engine/model.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "cpu/cpu_backend.h"
#include "engine/checkpoint.h"
#include "engine/cuda_factory.h"

namespace glm {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

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

Model::~Model() = default;

Status Model::load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                   const std::atomic<bool>* cancel, std::unique_ptr<Model>* out) {
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
  if (opts.prefetch) GLM_TRY(prefetch(m->weights_, progress, cancel));
  if (cancelled(cancel)) return Status::error(ErrorCode::Aborted, "model load aborted");
  GLM_TRY(m->create_backend(cancel));
  *out = std::move(m);
  return Status::ok();
}

Status Model::create_backend(const std::atomic<bool>* cancel) {
  if (opts_.backend != BackendChoice::Cpu) {
    CudaBackendOptions co;
    co.max_step_rows = opts_.max_step_rows;
    co.kv_cache_bytes = opts_.kv_cache_bytes;
    co.cancel = cancel;
    co.graphs = opts_.cuda_graphs;
    co.page_tokens = opts_.cuda_page_tokens;
    co.device_sampling = opts_.cuda_device_sampling;
    Status st = cuda_backend_available();
    if (st.is_ok()) st = create_cuda_backend(cfg_, weights_, co, &backend_);
    if (st.is_ok()) {
      backend_reason_ = opts_.backend == BackendChoice::Cuda ? "requested" : "auto: a usable CUDA device was found";
      return Status::ok();
    }
    // 'cuda' reports why it cannot run; 'auto' falls back to the CPU and keeps the reason (one line).
    if (opts_.backend == BackendChoice::Cuda || st.code() == ErrorCode::Aborted) return st;
    backend_reason_ = "auto: CPU because " + st.message();
  } else {
    backend_reason_ = "requested";
  }
  backend_ = std::make_unique<cpu::CpuBackend>(cfg_, threads_);
  return Status::ok();
}

std::string Model::weight_dtype() const { return dtype_name(weights_.embed_tokens.dtype); }

uint64_t Model::scratch_bytes() const {
  return backend_->scratch_bytes() + step_logits_.capacity() * sizeof(float);
}

Status Model::create_sequence(int64_t context_length, std::unique_ptr<Sequence>* out) {
  if (context_length < 1 || context_length > cfg_.max_position_embeddings) {
    return Status::error(ErrorCode::InvalidParam, "contextLength must be in [1, " +
                                                      std::to_string(cfg_.max_position_embeddings) +
                                                      "] (max_position_embeddings), got " +
                                                      std::to_string(context_length));
  }
  GLM_TRY(backend_->health());
  std::unique_ptr<KvStore> store;
  GLM_TRY(backend_->create_kv(context_length, &store));
  *out = std::make_unique<Sequence>(std::move(store));
  return Status::ok();
}

void Model::release_sequence(std::unique_ptr<Sequence>& seq) {
  if (!seq) return;
  kv_bytes_ -= seq->cache->allocated_bytes();
  seq.reset();
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

Status Model::evaluate(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel, const ActivationHook* hook) {
  GLM_TRY(backend_->health());  // a dead device fails fast, before anything is planned
  for (EvalRequest* r : requests) {
    GLM_TRY(check_tokens(r->tokens));
    if (r->tokens.empty()) return Status::error(ErrorCode::InvalidParam, "evaluate needs at least one token");
    for (EvalRequest* other : requests) {
      if (other != r && other->sequence == r->sequence) {
        return Status::error(ErrorCode::InvalidParam, "a batch may hold each session only once");
      }
    }
    Sequence& s = *r->sequence;
    const int64_t need = s.length() + int64_t(r->tokens.size());
    if (need > s.cache->capacity()) {
      return Status::error(ErrorCode::ContextOverflow,
                           "context overflow: " + std::to_string(r->tokens.size()) + " new tokens + " +
                               std::to_string(s.length()) + " in the session = " + std::to_string(need) +
                               " exceed the context length " + std::to_string(s.cache->capacity()));
    }
  }
  std::vector<int64_t> before(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) before[i] = requests[i]->sequence->length();
  Status st = run_steps(requests, cancel, hook);
  if (!st.is_ok()) {
    for (size_t i = 0; i < requests.size(); ++i) requests[i]->sequence->truncate(before[i]);
  }
  return st;
}

Status Model::run_steps(std::vector<EvalRequest*>& requests, const std::atomic<bool>* cancel, const ActivationHook* hook) {
  const int64_t V = cfg_.vocab_size;
  for (EvalRequest* r : requests) {
    Sequence& s = *r->sequence;
    const uint64_t had = s.cache->allocated_bytes();
    GLM_TRY(s.cache->reserve(s.length() + int64_t(r->tokens.size())));
    kv_bytes_ += s.cache->allocated_bytes() - had;
    const bool token_only = (r->greedy_only || r->sample) && !r->all_logits;
    r->logits.assign(token_only ? 0 : size_t(r->all_logits ? r->tokens.size() : 1) * size_t(V), 0.0f);
    r->greedy_token = -1;
    r->sample_logprobs = TokenLogprobs();
  }
  // Steps fill up to max_step_rows rows, taking each request's remaining tokens in order, so one step
  // can mix a long prefill chunk of one session with short decodes of others.
  std::vector<size_t> consumed(requests.size(), 0);
  for (;;) {
    StepPlan plan;
    std::vector<std::pair<size_t, size_t>> logit_owner;  // (request, token index) per logit row
    for (size_t i = 0; i < requests.size() && plan.rows() < opts_.max_step_rows; ++i) {
      EvalRequest& r = *requests[i];
      const size_t left = r.tokens.size() - consumed[i];
      if (left == 0) continue;
      const size_t take = std::min<size_t>(left, size_t(opts_.max_step_rows - plan.rows()));
      StepPlan::Sequence seq;
      seq.cache = r.sequence->cache.get();
      seq.row_begin = plan.rows();
      seq.n_rows = int64_t(take);
      seq.start_pos = r.sequence->length();
      for (size_t j = 0; j < take; ++j) {
        const size_t ti = consumed[i] + j;
        plan.tokens.push_back(r.tokens[ti]);
        plan.positions.push_back(int32_t(seq.start_pos + int64_t(j)));
        if (r.all_logits || ti + 1 == r.tokens.size()) {
          plan.logit_rows.push_back(seq.row_begin + int64_t(j));
          logit_owner.push_back({i, ti});
        }
      }
      plan.sequences.push_back(seq);
    }
    if (plan.rows() == 0) break;
    // Greedy selection on the backend when every logit row of the step only wants its argmax.
    plan.activation_hook = hook && *hook;
    plan.greedy_tokens = !logit_owner.empty();
    for (const auto& lo : logit_owner) {
      const EvalRequest& r = *requests[lo.first];
      plan.greedy_tokens = plan.greedy_tokens && r.greedy_only && !r.all_logits;
    }
    // Sampled selection on the backend when every logit row of the step has a sample request.
    bool sampled = !plan.greedy_tokens && !logit_owner.empty();
    for (const auto& lo : logit_owner) {
      const EvalRequest& r = *requests[lo.first];
      sampled = sampled && r.sample && !r.all_logits;
    }
    step_samples_.clear();
    if (sampled) {
      for (const auto& lo : logit_owner) step_samples_.push_back(*requests[lo.first]->sample);
      plan.sample_requests = &step_samples_;
    }
    step_logits_.resize(plan.logit_rows.size() * size_t(V));
    step_tokens_.assign(plan.logit_rows.size(), -1);
    step_logprobs_.assign(plan.logit_rows.size(), TokenLogprobs());
    GLM_TRY(forward_step(*backend_, cfg_, weights_, plan, step_logits_.data(), cancel, hook, step_tokens_.data(),
                         step_logprobs_.data()));
    for (size_t o = 0; o < logit_owner.size(); ++o) {
      EvalRequest& r = *requests[logit_owner[o].first];
      if (r.sample && !r.all_logits) {
        // (A mixed step downloaded the logits: the same selection on the host.)
        if (sampled) {
          r.greedy_token = step_tokens_[o];
          r.sample_logprobs = std::move(step_logprobs_[o]);
        } else if (!sample_request(step_logits_.data() + o * size_t(V), V, *r.sample, &r.greedy_token, &r.sample_logprobs).is_ok()) {
          r.greedy_token = -1;
        }
        continue;
      }
      if (r.greedy_only && !r.all_logits) {
        // (A mixed step downloaded the logits: the same rule on the host.)
        r.greedy_token = plan.greedy_tokens ? step_tokens_[o] : argmax_token(step_logits_.data() + o * size_t(V), V);
        continue;
      }
      const size_t dst_row = r.all_logits ? logit_owner[o].second : 0;
      std::copy_n(step_logits_.data() + o * size_t(V), size_t(V), r.logits.data() + dst_row * size_t(V));
    }
    // The step succeeded: its tokens are now in the caches.
    for (const auto& seq : plan.sequences) {
      for (size_t i = 0; i < requests.size(); ++i) {
        if (requests[i]->sequence->cache.get() != seq.cache) continue;
        Sequence& s = *requests[i]->sequence;
        s.tokens.insert(s.tokens.end(), requests[i]->tokens.begin() + long(consumed[i]),
                        requests[i]->tokens.begin() + long(consumed[i]) + seq.n_rows);
        s.cache->set_length(s.length());
        consumed[i] += size_t(seq.n_rows);
      }
    }
  }
  return Status::ok();
}

Status Model::generate(Sequence* seq, const std::vector<int32_t>& prompt, const GenerateParams& params,
                       const std::atomic<bool>* cancel, const std::atomic<bool>* stop, const TokenSink& sink,
                       GenerateResult* result) {
  if (prompt.empty()) return Status::error(ErrorCode::InvalidParam, "generate needs at least one prompt token");
  GLM_TRY(check_tokens(prompt));
  GLM_TRY(check_tokens(params.stop_tokens));
  *result = GenerateResult();
  result->prompt_tokens = int64_t(prompt.size());
  const int64_t V = cfg_.vocab_size;

  // What to evaluate: with prefix reuse, only the part after the longest common prefix with the
  // cache; at least the last prompt token, whose logits start the generation.
  std::vector<int32_t> fresh = prompt;
  if (params.reuse_prefix) {
    size_t common = 0;
    while (common < seq->tokens.size() && common < prompt.size() && seq->tokens[common] == prompt[common]) ++common;
    if (common == prompt.size()) --common;
    seq->truncate(int64_t(common));
    result->cached_tokens = int64_t(common);
    fresh.assign(prompt.begin() + long(common), prompt.end());
  }
  Sampler sampler(params.sampling);
  sampler.set_context(params.reuse_prefix ? prompt : [&] {
    std::vector<int32_t> all = seq->tokens;
    all.insert(all.end(), prompt.begin(), prompt.end());
    return all;
  }());

  auto t0 = std::chrono::steady_clock::now();
  EvalRequest req;
  req.sequence = seq;
  req.tokens = std::move(fresh);
  // Greedy with nothing that needs the logits (penalties, logprobs): only the argmax token is fetched,
  // which a device backend selects on the device (4 bytes instead of a vocab-sized row per token).
  const SamplingParams& sp = params.sampling;
  req.greedy_only = sp.temperature == 0 && sp.top_logprobs < 0 && sp.repetition_penalty == 1 && sp.presence_penalty == 0 &&
                    sp.frequency_penalty == 0;
  // Otherwise, where the backend selects on the device (CUDA), each step carries the Sampler's u and
  // history (drawn before the step, in the same order sample() draws them) and only the token (plus
  // logprobs) comes back; the Sampler then records it, so the penalties and the RNG stream are the ones
  // the host path has.
  SampleRequest sreq;
  if (!req.greedy_only && backend_->samples_on_device(sp)) {
    sreq.params = sp;
    req.sample = &sreq;
  }
  const bool penalties = sp.repetition_penalty != 1 || sp.presence_penalty != 0 || sp.frequency_penalty != 0;
  auto prepare = [&] {
    if (!req.sample) return;
    sreq.u = sampler.draw_uniform();
    if (penalties) sreq.history = sampler.history();
  };
  std::vector<EvalRequest*> batch{&req};
  prepare();
  GLM_TRY(evaluate(batch, cancel));
  result->prefill_ms = ms_since(t0);

  auto t1 = std::chrono::steady_clock::now();
  result->finish_reason = "length";
  for (int64_t n = 0; n < params.max_tokens; ++n) {
    if (stop && stop->load(std::memory_order_relaxed)) {
      result->finish_reason = "stop_requested";
      break;
    }
    GeneratedToken tok;
    if (req.greedy_only) {
      // Sampler::sample's greedy branch without the logits (no penalties or logprobs to apply).
      if (req.greedy_token < 0) return Status::error(ErrorCode::Numerical, "sampler: every logit is NaN");
      tok.id = req.greedy_token;
    } else if (req.sample) {
      if (req.greedy_token < 0) return Status::error(ErrorCode::Numerical, "sampler: every logit is NaN or none is finite");
      tok.id = req.greedy_token;
      if (sp.top_logprobs >= 0) tok.logprobs = req.sample_logprobs;
      sampler.record(tok.id);
    } else {
      GLM_TRY(sampler.sample(req.logits.data(), V, &tok.id, &tok.logprobs));
    }
    result->tokens.push_back(tok);
    if (sink) sink(tok);
    if (std::find(params.stop_tokens.begin(), params.stop_tokens.end(), tok.id) != params.stop_tokens.end()) {
      result->finish_reason = "stop";
      break;
    }
    // The last token needs no forward pass (nothing reads its logits); a full context ends the run.
    if (n + 1 == params.max_tokens) break;
    if (seq->length() + 1 > seq->cache->capacity()) break;
    req.tokens.assign(1, tok.id);
    prepare();
    GLM_TRY(evaluate(batch, cancel));
  }
  result->decode_ms = ms_since(t1);
  return Status::ok();
}

}  // namespace glm
