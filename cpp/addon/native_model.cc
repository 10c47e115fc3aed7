// NativeModel / NativeSession: JS handles on a ModelHost and its sessions, and loadModel().
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "addon/async_job.h"
#include "addon/grammar_binding.h"
#include "addon/host.h"
#include "cpu/kernels.h"

namespace glm::addon {

AbortToken abort_token_from(const Napi::Value& v);
AbortToken stop_token_from(const Napi::Value& v);

namespace {

std::vector<int32_t> tokens_from(const Napi::Value& v) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_uint32_array) {
      auto a = v.As<Napi::Uint32Array>();
      std::vector<int32_t> out(a.ElementLength());
      for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] > 0x7fffffffu ? -1 : int32_t(a[i]);
      return out;
    }
    if (ta.TypedArrayType() == napi_int32_array) {
      auto a = v.As<Napi::Int32Array>();
      return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
    }
  }
  throw Napi::TypeError::New(v.Env(), "token ids must be a Uint32Array or Int32Array");
}

Napi::Float32Array to_float32(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

// {ids: Int32Array, logprobs?: Float32Array, topIds?: Int32Array, topLogprobs?: Float32Array}, the
// top arrays flattened [count * topN] and padded with -1 / -Infinity where fewer alternatives exist.
Napi::Object tokens_to_js(Napi::Env env, const std::vector<GeneratedToken>& tokens, bool want_logprobs, int64_t top_n) {
  Napi::Object o = Napi::Object::New(env);
  auto ids = Napi::Int32Array::New(env, tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) ids[i] = tokens[i].id;
  o.Set("ids", ids);
  if (!want_logprobs) return o;
  auto lp = Napi::Float32Array::New(env, tokens.size());
  auto top_ids = Napi::Int32Array::New(env, tokens.size() * size_t(top_n));
  auto top_lp = Napi::Float32Array::New(env, tokens.size() * size_t(top_n));
  for (size_t i = 0; i < tokens.size(); ++i) {
    lp[i] = tokens[i].logprobs.chosen;
    for (size_t j = 0; j < size_t(top_n); ++j) {
      const bool has = j < tokens[i].logprobs.top.size();
      top_ids[i * size_t(top_n) + j] = has ? tokens[i].logprobs.top[j].first : -1;
      top_lp[i * size_t(top_n) + j] = has ? tokens[i].logprobs.top[j].second : -INFINITY;
    }
  }
  o.Set("logprobs", lp);
  o.Set("topIds", top_ids);
  o.Set("topLogprobs", top_lp);
  return o;
}

double number_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

}  // namespace

class NativeSession : public Napi::ObjectWrap<NativeSession> {
 public:
  explicit NativeSession(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeSession>(info) {
    auto* pair = info[0].As<Napi::External<std::pair<std::shared_ptr<ModelHost>, std::shared_ptr<SessionState>>>>().Data();
    host_ = pair->first;
    state_ = pair->second;
  }
  ~NativeSession() override { release(); }

  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(state_->length.load())); }

  const std::shared_ptr<ModelHost>& host() const { return host_; }
  const std::shared_ptr<SessionState>& state() const { return state_; }

  // Empties the session after the calls made on it before (its queue order).
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    auto req = std::make_shared<ResetRequest>(state_->sequence.get());
    return submit_request<ResetRequest>(info.Env(), host_, {state_}, abort_token_from(info.Env().Undefined()), req,
                                        [](Napi::Env env, ResetRequest&) { return env.Undefined(); });
  }

  // Ends this session's requests (they reject with DISPOSED; a batch it is in rolls back everywhere)
  // and frees its pages, between two engine steps: settles within one step.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (state_->disposed.exchange(true)) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    host_->abort_jobs(state_.get());
    auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node session dispose", 0, 1);
    auto* d = new Napi::Promise::Deferred(deferred);
    auto state = state_;
    auto host = host_;
    const bool posted = host_->executor.post([host, state, tsfn, d]() mutable {
      if (host->model) {
        host->model->dispose_sequence(state->sequence.get());
        host->refresh_memory();
      }
      state->sequence.reset();
      state->publish_length();
      tsfn.BlockingCall([d](Napi::Env, Napi::Function) {
        guarded_js([&] { d->Resolve(d->Env().Undefined()); });
        delete d;
      });
      tsfn.Release();
      pump(host);
    });
    if (!posted) {  // the model went first: nothing left to free
      tsfn.Release();
      delete d;
      deferred.Resolve(env.Undefined());
    }
    return deferred.Promise();
  }

 private:
  void release() {
    // GC of an undisposed session: free it on the engine thread without waiting.
    if (!state_ || state_->disposed.exchange(true)) return;
    host_->abort_jobs(state_.get());
    auto state = state_;
    auto host = host_;
    host_->executor.post([host, state] {
      if (host->model) host->model->dispose_sequence(state->sequence.get());
      state->sequence.reset();
      pump(host);
    });
  }
  std::shared_ptr<ModelHost> host_;
  std::shared_ptr<SessionState> state_;
};

Napi::Function define_session(Napi::Env env) {
  return NativeSession::DefineClass(env, "NativeSession",
                                    {NativeSession::InstanceAccessor("length", &NativeSession::Length, nullptr),
                                     NativeSession::InstanceMethod("reset", &NativeSession::Reset),
                                     NativeSession::InstanceMethod("dispose", &NativeSession::Dispose)});
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    host_ = *info[0].As<Napi::External<std::shared_ptr<ModelHost>>>().Data();
  }
  ~NativeModel() override {
    // Collected without dispose(): stop its work; the host (and model) go when the last job ends.
    if (host_ && !host_->disposed.exchange(true)) {
      host_->abort_jobs(nullptr);
      auto host = host_;
      host_->executor.post([host] {
        if (host->model) host->model->shutdown();
        host->model.reset();
      });
    }
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (host_->disposed || !host_->model) throw status_error(env, Status::error(ErrorCode::Disposed, "model is disposed"));
    const Model& m = *host_->model;
    const ModelConfig& c = m.config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("architecture", "Glm4MoeForCausalLM");
    auto set = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
    set("hiddenSize", double(c.hidden_size));
    set("numLayers", double(c.num_hidden_layers));
    set("numAttentionHeads", double(c.num_attention_heads));
    set("numKeyValueHeads", double(c.num_key_value_heads));
    set("headDim", double(c.head_dim));
    set("rotaryDim", double(c.rotary_dim));
    set("vocabSize", double(c.vocab_size));
    set("intermediateSize", double(c.intermediate_size));
    set("moeIntermediateSize", double(c.moe_intermediate_size));
    set("numExperts", double(c.n_routed_experts));
    set("numExpertsPerToken", double(c.num_experts_per_tok));
    set("numSharedExperts", double(c.n_shared_experts));
    set("firstDenseLayers", double(c.first_k_dense_replace));
    set("maxPositionEmbeddings", double(c.max_position_embeddings));
    set("routedScalingFactor", c.routed_scaling_factor);
    o.Set("useQkNorm", Napi::Boolean::New(env, c.use_qk_norm));
    o.Set("hasMtp", Napi::Boolean::New(env, m.weights().mtp != nullptr));
    Napi::Array eos = Napi::Array::New(env, c.eos_token_ids.size());
    for (size_t i = 0; i < c.eos_token_ids.size(); ++i) eos.Set(uint32_t(i), Napi::Number::New(env, double(c.eos_token_ids[i])));
    o.Set("eosTokenIds", eos);
    o.Set("dtype", m.weight_dtype());
    o.Set("backend", m.backend_name());
    o.Set("backendReason", m.backend_reason());
    set("threads", m.threads());
    o.Set("cpuIsa", cpu::isa_name(cpu::active_isa()));
    Napi::Object mem = Napi::Object::New(env);
    mem.Set("weightsMappedBytes", Napi::Number::New(env, double(m.mapped_weight_bytes())));
    mem.Set("weightsOwnedBytes", Napi::Number::New(env, double(m.owned_weight_bytes())));
    mem.Set("kvCacheBytes", Napi::Number::New(env, double(host_->kv_bytes.load())));
    mem.Set("kvPoolBytes", Napi::Number::New(env, double(m.kv_pool().pool_bytes())));
    mem.Set("scratchBytes", Napi::Number::New(env, double(host_->scratch_bytes.load())));
    o.Set("memory", mem);
    Napi::Object graphs = Napi::Object::New(env);
    graphs.Set("captures", Napi::Number::New(env, double(host_->graph_captures.load())));
    graphs.Set("replays", Napi::Number::New(env, double(host_->graph_replays.load())));
    graphs.Set("failures", Napi::Number::New(env, double(host_->graph_failures.load())));
    o.Set("cudaGraphs", graphs);
    Napi::Object kv = Napi::Object::New(env);
    kv.Set("type", kv_type_name(m.kv_pool().type));
    kv.Set("pageTokens", Napi::Number::New(env, double(m.kv_pool().page_tokens)));
    kv.Set("pages", Napi::Number::New(env, double(m.kv_pool().n_pages)));
    kv.Set("pageBytes", Napi::Number::New(env, double(m.kv_pool().page_bytes)));
    kv.Set("prefixCache", Napi::Boolean::New(env, m.kv_prefix_cache()));
    o.Set("kvCache", kv);
    Napi::Object sched = Napi::Object::New(env);
    sched.Set("maxBatchTokens", Napi::Number::New(env, double(m.scheduler_options().max_step_tokens)));
    sched.Set("maxConcurrentRequests", Napi::Number::New(env, double(m.scheduler_options().max_running)));
    sched.Set("maxQueuedRequests", Napi::Number::New(env, double(m.scheduler_options().max_queued)));
    o.Set("scheduler", sched);
    Napi::Object spec = Napi::Object::New(env);
    spec.Set("draftTokens", Napi::Number::New(env, double(m.draft_tokens())));
    spec.Set("reason", m.speculation_reason());
    o.Set("speculative", spec);
    return o;
  }

  // The scheduler's counters and latency percentiles (engine/serving_stats.h), read without waiting
  // for the engine thread.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (host_->disposed || !host_->model) throw status_error(env, Status::error(ErrorCode::Disposed, "model is disposed"));
    const ServingStats st = host_->model->stats();
    Napi::Object o = Napi::Object::New(env);
    auto num = [&](Napi::Object& obj, const char* k, double v) { obj.Set(k, Napi::Number::New(env, v)); };
    num(o, "running", double(st.running));
    num(o, "waiting", double(st.waiting));
    Napi::Object kv = Napi::Object::New(env);
    num(kv, "pagesTotal", double(st.kv_pages_total));
    num(kv, "pagesUsed", double(st.kv_pages_used));
    num(kv, "pagesCached", double(st.kv_pages_cached));
    num(kv, "pageTokens", double(st.kv_page_tokens));
    num(kv, "evictions", double(st.evictions));
    o.Set("kvCache", kv);
    Napi::Object pc = Napi::Object::New(env);
    num(pc, "queryTokens", double(st.prefix_cache_queries));
    num(pc, "hitTokens", double(st.prefix_cache_hits));
    num(pc, "hitRate", st.prefix_cache_queries > 0 ? double(st.prefix_cache_hits) / double(st.prefix_cache_queries) : 0);
    o.Set("prefixCache", pc);
    num(o, "preemptions", double(st.preemptions));
    num(o, "promptTokens", double(st.prompt_tokens));
    num(o, "generationTokens", double(st.generation_tokens));
    num(o, "requestsFinished", double(st.requests_finished));
    num(o, "requestsFailed", double(st.requests_failed));
    num(o, "steps", double(st.steps));
    Napi::Object sp = Napi::Object::New(env);
    sp.Set("active", Napi::Boolean::New(env, st.speculation_active));
    num(sp, "rounds", double(st.draft_rounds));
    num(sp, "draftTokens", double(st.draft_tokens));
    num(sp, "acceptedDraftTokens", double(st.accepted_draft_tokens));
    num(sp, "acceptanceRate", st.draft_tokens > 0 ? double(st.accepted_draft_tokens) / double(st.draft_tokens) : 0);
    num(sp, "mtpSteps", double(st.mtp_steps));
    o.Set("speculative", sp);
    num(o, "promptTokensPerSecond", st.prompt_tokens_per_second);
    num(o, "generationTokensPerSecond", st.generation_tokens_per_second);
    auto pct = [&](const Percentiles& p) {
      Napi::Object x = Napi::Object::New(env);
      num(x, "p50", p.p50);
      num(x, "p90", p.p90);
      num(x, "p99", p.p99);
      num(x, "count", double(p.count));
      return x;
    };
    o.Set("timeToFirstTokenMs", pct(st.time_to_first_token_ms));
    o.Set("interTokenLatencyMs", pct(st.inter_token_latency_ms));
    return o;
  }

  Napi::Value CreateSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (host_->disposed || !host_->model) throw status_error(env, Status::error(ErrorCode::Disposed, "model is disposed"));
    const double ctx = info[0].As<Napi::Number>().DoubleValue();
    auto state = std::make_shared<SessionState>();
    // Sizes are validated here; the cache itself grows page by page as tokens arrive.
    Status st = host_->model->create_sequence(int64_t(ctx), &state->sequence);
    if (!st.is_ok()) throw status_error(env, st);
    std::pair<std::shared_ptr<ModelHost>, std::shared_ptr<SessionState>> pair{host_, state};
    AddonData* data = env.GetInstanceData<AddonData>();
    return data->session_ctor.New({Napi::External<decltype(pair)>::New(env, &pair)});
  }

  // evaluate(sessions[], tokenArrays[], allLogits[], abortFlag, cacheNamespace) -> Promise<Float32Array[]>
  // All or nothing across the sessions.
  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array sessions = info[0].As<Napi::Array>();
    Napi::Array tokens = info[1].As<Napi::Array>();
    Napi::Array all = info[2].As<Napi::Array>();
    auto req = std::make_shared<EvaluateRequest>();
    std::vector<std::shared_ptr<SessionState>> states;
    req->items.resize(sessions.Length());
    for (uint32_t i = 0; i < sessions.Length(); ++i) {
      NativeSession* s = NativeSession::Unwrap(sessions.Get(i).As<Napi::Object>());
      if (s->host() != host_) throw Napi::TypeError::New(env, "session belongs to another model");
      if (s->state()->disposed) throw status_error(env, Status::error(ErrorCode::Disposed, "session is disposed"));
      states.push_back(s->state());
      req->items[i].sequence = s->state()->sequence.get();
      req->items[i].tokens = tokens_from(tokens.Get(i));
      req->items[i].all_logits = all.Get(i).ToBoolean();
      if (info.Length() > 5 && info[5].IsArray()) req->items[i].draft_logits = info[5].As<Napi::Array>().Get(i).ToBoolean();
    }
    if (info.Length() > 4 && info[4].IsString()) req->cache_namespace = info[4].As<Napi::String>().Utf8Value();
    return submit_request<EvaluateRequest>(env, host_, states, abort_token_from(info[3]), req,
        [](Napi::Env env, EvaluateRequest& r) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, r.items.size());
          for (size_t i = 0; i < r.items.size(); ++i) {
            Napi::Value logits = to_float32(env, r.items[i].logits);
            // The MTP layer's logits ride on the item's array (lib/ takes them off).
            if (r.items[i].draft_logits) logits.As<Napi::Object>().Set("draftLogits", to_float32(env, r.items[i].draft_logits_out));
            out.Set(uint32_t(i), logits);
          }
          return out;
        });
  }

  // generate(session, tokens, params, flag, onTokens?) -> Promise<result>
  // params: {maxTokens, temperature, topK, topP, minP, repetitionPenalty, presencePenalty,
  //          frequencyPenalty, topLogprobs (-1 = off), seed, stopTokens, reusePrefix, cacheNamespace?}
  // onTokens(start, batch) streams tokens as they are chosen; the result holds them all as well, so
  // lib/ can finish from the result whatever order the two channels arrive in.
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NativeSession* s = NativeSession::Unwrap(info[0].As<Napi::Object>());
    if (s->host() != host_) throw Napi::TypeError::New(env, "session belongs to another model");
    if (s->state()->disposed) throw status_error(env, Status::error(ErrorCode::Disposed, "session is disposed"));
    Napi::Object o = info[2].As<Napi::Object>();
    struct Stream {
      std::mutex mu;
      std::vector<GeneratedToken> pending;
      size_t pending_start = 0;
      size_t produced = 0;
      bool scheduled = false;
      Napi::ThreadSafeFunction tsfn;
    };
    auto req = std::make_shared<GenerateRequest>();
    req->sequence = s->state()->sequence.get();
    req->prompt = tokens_from(info[1]);
    GenerateParams& p = req->params;
    p.max_tokens = int64_t(number_field(o, "maxTokens"));
    p.sampling.temperature = number_field(o, "temperature");
    p.sampling.top_k = int64_t(number_field(o, "topK"));
    p.sampling.top_p = number_field(o, "topP");
    p.sampling.min_p = number_field(o, "minP");
    p.sampling.repetition_penalty = number_field(o, "repetitionPenalty");
    p.sampling.presence_penalty = number_field(o, "presencePenalty");
    p.sampling.frequency_penalty = number_field(o, "frequencyPenalty");
    p.sampling.top_logprobs = int64_t(number_field(o, "topLogprobs"));
    p.sampling.seed = uint64_t(number_field(o, "seed"));
    p.stop_tokens = tokens_from(o.Get("stopTokens"));
    p.reuse_prefix = o.Get("reusePrefix").ToBoolean();
    if (o.Has("draftTokens") && o.Get("draftTokens").IsNumber()) p.draft_tokens = int64_t(number_field(o, "draftTokens"));
    if (o.Has("grammar")) p.grammar = grammar_from(o.Get("grammar"));
    if (o.Has("cacheNamespace") && o.Get("cacheNamespace").IsString()) req->cache_namespace = o.Get("cacheNamespace").As<Napi::String>().Utf8Value();
    req->stop = stop_token_from(info[3]);
    const int64_t top_n = std::max<int64_t>(p.sampling.top_logprobs, 0);
    const bool want_logprobs = p.sampling.top_logprobs >= 0;
    if (info.Length() > 4 && info[4].IsFunction()) {
      auto stream = std::make_shared<Stream>();
      stream->tsfn = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "glm-node tokens", 0, 1);
      // Tokens are batched: one JS call drains everything chosen since the previous call.
      req->sink = [stream, top_n, want_logprobs](const GeneratedToken& t) {
        std::lock_guard<std::mutex> lock(stream->mu);
        if (stream->pending.empty()) stream->pending_start = stream->produced;
        stream->pending.push_back(t);
        ++stream->produced;
        if (stream->scheduled) return;  // a drain is already queued: it will take this token too
        stream->scheduled = true;
        stream->tsfn.NonBlockingCall([stream, top_n, want_logprobs](Napi::Env env, Napi::Function fn) {
          std::vector<GeneratedToken> batch;
          size_t start;
          {
            std::lock_guard<std::mutex> lock(stream->mu);
            batch.swap(stream->pending);
            start = stream->pending_start;
            stream->scheduled = false;
          }
          if (batch.empty()) return;
          // (lib/'s handler never throws; a stray exception must not cross into the engine either.)
          guarded_js([&] { fn.Call({Napi::Number::New(env, double(start)), tokens_to_js(env, batch, want_logprobs, top_n)}); });
        });
      };
      // The stream's function is released with the request (after its last token).
      auto done_stream = stream;
      req->release_hook = [done_stream] { done_stream->tsfn.Release(); };
    }
    return submit_request<GenerateRequest>(env, host_, {s->state()}, abort_token_from(info[3]), req,
        [want_logprobs, top_n](Napi::Env env, GenerateRequest& r) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("tokens", tokens_to_js(env, r.result.tokens, want_logprobs, top_n));
          out.Set("finishReason", r.result.finish_reason);
          out.Set("promptTokens", Napi::Number::New(env, double(r.result.prompt_tokens)));
          out.Set("cachedTokens", Napi::Number::New(env, double(r.result.cached_tokens)));
          out.Set("queueMs", Napi::Number::New(env, r.result.queue_ms));
          out.Set("prefillMs", Napi::Number::New(env, r.result.prefill_ms));
          out.Set("decodeMs", Napi::Number::New(env, r.result.decode_ms));
          out.Set("draftTokens", Napi::Number::New(env, double(r.result.draft_tokens)));
          out.Set("acceptedDraftTokens", Napi::Number::New(env, double(r.result.accepted_draft_tokens)));
          return out;
        });
  }

  Napi::Value CompileGrammar(const Napi::CallbackInfo& info) { return compile_grammar(info, host_); }
  Napi::Value HasGrammarVocabulary(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), host_->grammars.has_vocabulary());
  }

  // Stops in-flight work and releases the weights once the executor drains; idempotent.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (host_->disposed.exchange(true)) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    host_->abort_jobs(nullptr);
    auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node dispose", 0, 1);
    auto host = host_;
    auto* d = new Napi::Promise::Deferred(deferred);
    host_->executor.post([host, tsfn, d]() mutable {
      if (host->model) host->model->shutdown();  // every request rejects with DISPOSED first
      host->model.reset();
      host->kv_bytes = 0;
      host->scratch_bytes = 0;
      tsfn.BlockingCall([host, d](Napi::Env env, Napi::Function) {
        guarded_js([&] {
          Napi::MemoryManagement::AdjustExternalMemory(env, -host->reported_external_bytes);
          host->reported_external_bytes = 0;
          d->Resolve(env.Undefined());
        });
        delete d;
      });
      tsfn.Release();
    });
    return deferred.Promise();
  }

 private:
  std::shared_ptr<ModelHost> host_;
};

Napi::Function define_model(Napi::Env env) {
  return NativeModel::DefineClass(env, "NativeModel",
                                  {NativeModel::InstanceMethod("info", &NativeModel::Info),
                                   NativeModel::InstanceMethod("createSession", &NativeModel::CreateSession),
                                   NativeModel::InstanceMethod("evaluate", &NativeModel::Evaluate),
                                   NativeModel::InstanceMethod("generate", &NativeModel::Generate),
                                   NativeModel::InstanceMethod("stats", &NativeModel::Stats),
                                   NativeModel::InstanceMethod("compileGrammar", &NativeModel::CompileGrammar),
                                   NativeModel::InstanceMethod("hasGrammarVocabulary", &NativeModel::HasGrammarVocabulary),
                                   NativeModel::InstanceMethod("dispose", &NativeModel::Dispose)});
}

// loadModel(dir, {backend, threads, prefetch, cudaGraphs}, onProgress | undefined, abortFlag | undefined) -> Promise<NativeModel>
Napi::Value load_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "loadModel: dir must be a string");
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object opts = info[1].As<Napi::Object>();
  LoadOptions lo;
  lo.threads = int(number_field(opts, "threads"));
  lo.prefetch = opts.Get("prefetch").ToBoolean();
  lo.cuda_graphs = !opts.Has("cudaGraphs") || opts.Get("cudaGraphs").ToBoolean();
  // The serving options (lib/ validated them; absent ones keep the engine's defaults).
  auto opt_number = [&](const char* key, double fallback) {
    return opts.Has(key) && opts.Get(key).IsNumber() ? opts.Get(key).As<Napi::Number>().DoubleValue() : fallback;
  };
  lo.kv_cache_bytes = uint64_t(opt_number("kvCacheBytes", 0));
  lo.kv_cache_tokens = int64_t(opt_number("kvCacheTokens", 0));
  lo.kv_page_tokens = int64_t(opt_number("kvPageTokens", double(lo.kv_page_tokens)));
  lo.max_step_rows = int64_t(opt_number("maxBatchTokens", 0));
  lo.max_running = int64_t(opt_number("maxConcurrentRequests", double(lo.max_running)));
  lo.max_queued = int64_t(opt_number("maxQueuedRequests", double(lo.max_queued)));
  lo.prefix_hash_bits = int(opt_number("prefixHashBits", 64));
  // speculative: false -> 0 drafts; {draftTokens?, maxBatch?, minAcceptance?}; absent -> the defaults.
  if (opts.Has("speculative")) {
    Napi::Value sv = opts.Get("speculative");
    if (sv.IsBoolean() && !sv.As<Napi::Boolean>().Value()) {
      lo.draft_tokens = 0;
    } else if (sv.IsObject()) {
      Napi::Object so = sv.As<Napi::Object>();
      auto field = [&](const char* k, double fallback) { return so.Has(k) && so.Get(k).IsNumber() ? so.Get(k).As<Napi::Number>().DoubleValue() : fallback; };
      lo.draft_tokens = int64_t(field("draftTokens", -1));
      lo.spec_max_batch = int64_t(field("maxBatch", -1));
      lo.spec_min_acceptance = field("minAcceptance", -1);
    }
  }
  if (opts.Has("prefixCache")) lo.prefix_cache = opts.Get("prefixCache").ToBoolean();
  if (opts.Has("kvCacheType") && opts.Get("kvCacheType").IsString()) {
    if (!parse_kv_type(opts.Get("kvCacheType").As<Napi::String>().Utf8Value(), &lo.kv_type)) {
      throw Napi::TypeError::New(env, "loadModel: kvCacheType must be 'f32', 'bf16' or 'fp8'");
    }
  }
  // 'cpu' | 'cuda' | 'auto' (lib/ validated it); 'auto' falls back to the CPU with a reason in info().
  const std::string backend = opts.Has("backend") && opts.Get("backend").IsString() ? opts.Get("backend").As<Napi::String>().Utf8Value() : "cpu";
  lo.backend = backend == "cuda" ? BackendChoice::Cuda : backend == "auto" ? BackendChoice::Auto : BackendChoice::Cpu;
  AbortToken token = abort_token_from(info[3]);
  auto deferred = Napi::Promise::Deferred::New(env);

  struct Ctx {
    Napi::Promise::Deferred deferred;
    Status status;
    std::unique_ptr<Model> model;
    Napi::FunctionReference on_progress;  // empty when no callback was given
  };
  auto* ctx = new Ctx{deferred, Status::ok(), nullptr, {}};
  if (info[2].IsFunction()) ctx->on_progress = Napi::Persistent(info[2].As<Napi::Function>());
  // Progress reports and the completion travel through one thread-safe function, so JS sees them in
  // order: every progress callback (and an abort it triggers) runs before the promise settles.
  auto channel = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node load", 0, 1);

  // Loading runs on its own thread: the model's executor does not exist until the model does.
  std::thread([dir, lo, token, ctx, channel]() mutable {
    struct Report { std::string stage; double done, total; };
    ProgressFn on_progress;
    if (!ctx->on_progress.IsEmpty()) {
      on_progress = [&](const char* stage, uint64_t d, uint64_t t) {
        auto* r = new Report{stage, double(d), double(t)};
        napi_status s = channel.NonBlockingCall(r, [ctx](Napi::Env env, Napi::Function, Report* r) {
          // A throwing user callback must not take the load down: lib/ catches and reports it.
          guarded_js([&] {
            ctx->on_progress.Call({Napi::String::New(env, r->stage), Napi::Number::New(env, r->done),
                                   Napi::Number::New(env, r->total)});
          });
          delete r;
        });
        if (s != napi_ok) delete r;
      };
    }
    ctx->status = Model::load(dir, lo, on_progress, token.get(), &ctx->model);
    channel.BlockingCall([ctx](Napi::Env env, Napi::Function) {
      guarded_js([&] {
        if (!ctx->status.is_ok()) {
          ctx->deferred.Reject(status_error(env, ctx->status).Value());
        } else {
          auto host = std::make_shared<ModelHost>();
          host->model = std::move(ctx->model);
          host->refresh_memory();
          AddonData* data = env.GetInstanceData<AddonData>();
          try {
            ctx->deferred.Resolve(data->model_ctor.New({Napi::External<std::shared_ptr<ModelHost>>::New(env, &host)}));
          } catch (const Napi::Error& e) {
            ctx->deferred.Reject(e.Value());
          }
        }
      });
      delete ctx;
    });
    channel.Release();
  }).detach();
  return deferred.Promise();
}

}  // namespace glm::addon
