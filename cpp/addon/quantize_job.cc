// N-API glue of the checkpoint quantizer (engine/quantize.h) and its calibration
// (engine/quantize_calibrate.h). Baton → engine-owned thread → promise (DESIGN.md rule 8): the JS thread
// copies the inputs into plain C++ structs, a quantizer's own thread (with its own thread pool) does
// the work, and the results become JS values back on the JS thread. Never libuv's pool.
//
//   createQuantizer(threads) -> handle
//   quantizeMatrix(handle, job) -> Promise<{data, scales, err2, ref2, werr2, wref2}>
//   disposeQuantizer(handle)
//   collectActivationStats(dir, sequences, {threads, minExpertTokens}, abortFlag?, onProgress?)
//     -> Promise<{tokens, inputs: {key: Float32Array}, covariances: {key: Float32Array}, inputTokens: {key: n}, modules: {module: key},
//                 expertTokens: {prefix: n}}>
#include <napi.h>

#include <cstring>
#include <memory>
#include <thread>

#include "addon/host.h"
#include "cpu/thread_pool.h"
#include "engine/executor.h"
#include "engine/model.h"
#include "engine/quantize.h"
#include "engine/quantize_calibrate.h"

namespace glm::addon {

AbortToken abort_token_from(const Napi::Value& v);

namespace {

// One quantizer: its job thread (jobs run one at a time, in order), the pool the rows spread over, and
// the float64 copy of the current weight, kept at the largest size seen (fresh pages are expensive).
struct QuantizerHost {
  explicit QuantizerHost(int threads) : pool(threads) {}
  cpu::ThreadPool pool;
  std::vector<double> weight;  // job thread only
  Executor executor;  // declared last: drained before the pool goes away
};

using QuantizerRef = std::shared_ptr<QuantizerHost>;

QuantizerRef* unwrap(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a quantizer handle");
  auto* ref = v.As<Napi::External<QuantizerRef>>().Data();
  if (!ref || !*ref) throw status_error(v.Env(), Status::error(ErrorCode::Disposed, "quantizer is disposed"));
  return ref;
}

Napi::Value create_quantizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int threads = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  if (threads < 0 || threads > 1024) throw Napi::RangeError::New(env, "createQuantizer: threads in [0, 1024]");
  const int n = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  auto* ref = new QuantizerRef(std::make_shared<QuantizerHost>(n));
  return Napi::External<QuantizerRef>::New(env, ref, [](Napi::Env, QuantizerRef* r) { delete r; });
}

Napi::Value dispose_quantizer(const Napi::CallbackInfo& info) {
  if (info[0].IsExternal()) {
    auto* ref = info[0].As<Napi::External<QuantizerRef>>().Data();
    if (ref) ref->reset();  // jobs in flight keep their own reference
  }
  return info.Env().Undefined();
}

template <class T>
std::vector<T> copy_typed(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string("quantizeMatrix: ") + what + " must be a typed array");
  auto a = v.As<Napi::TypedArray>();
  if (a.ByteLength() % sizeof(T) != 0) throw Napi::TypeError::New(v.Env(), std::string("quantizeMatrix: ") + what + " has a bad length");
  std::vector<T> out(a.ByteLength() / sizeof(T));
  const auto* src = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  if (!out.empty()) std::memcpy(out.data(), src, a.ByteLength());
  return out;
}

Napi::Buffer<uint8_t> to_buffer(Napi::Env env, std::vector<uint8_t>&& bytes) {
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  return Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(), [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned);
}

Napi::Value quantize_matrix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QuantizerRef host = *unwrap(info[0]);
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, "quantizeMatrix: job must be an object");
  Napi::Object job = info[1].As<Napi::Object>();

  struct Baton {
    // The input bytes are read in place: a Buffer's backing store never moves, and the reference keeps
    // it alive until the JS thread lets go of it (in the completion callback: references are JS-thread
    // objects).
    Napi::ObjectReference input;
    const uint8_t* bytes = nullptr;
    size_t n_bytes = 0;
    std::vector<float> in_scales, channel_weight, covariance;
    DType dtype = DType::BF16;
    int64_t rows = 0, cols = 0;
    quant::InputScheme scheme = quant::InputScheme::None;
    quant::QuantizeParams params;
    quant::QuantizedMatrix result;
    Status status;
  };
  auto b = std::make_shared<Baton>();
  const std::string target = job.Get("target").ToString().Utf8Value();
  if (target == "fp8") b->params.target = quant::Target::Fp8Channel;
  else if (target == "fp8-block") b->params.target = quant::Target::Fp8Block;
  else if (target == "mxfp4") b->params.target = quant::Target::Mxfp4;
  else throw Napi::TypeError::New(env, "quantizeMatrix: target must be fp8, fp8-block or mxfp4");
  if (!parse_dtype(job.Get("dtype").ToString().Utf8Value(), &b->dtype)) throw Napi::TypeError::New(env, "quantizeMatrix: unknown dtype");
  b->rows = job.Get("rows").ToNumber().Int64Value();
  b->cols = job.Get("cols").ToNumber().Int64Value();
  const Napi::Value bytes = job.Get("bytes");
  if (!bytes.IsTypedArray()) throw Napi::TypeError::New(env, "quantizeMatrix: bytes must be a Uint8Array");
  auto ta = bytes.As<Napi::TypedArray>();
  b->bytes = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  b->n_bytes = ta.ByteLength();
  b->input = Napi::Persistent(bytes.As<Napi::Object>());
  const Napi::Value scheme = job.Get("inScheme");
  if (scheme.IsString()) {
    const std::string s = scheme.As<Napi::String>().Utf8Value();
    b->scheme = s == "fp8-channel" ? quant::InputScheme::Fp8Channel : s == "fp8-block" ? quant::InputScheme::Fp8Block : quant::InputScheme::None;
    b->in_scales = copy_typed<float>(job.Get("inScales"), "inScales");
  }
  const Napi::Value cw = job.Get("channelWeight");
  if (!cw.IsUndefined() && !cw.IsNull()) {
    b->channel_weight = copy_typed<float>(cw, "channelWeight");
    if (int64_t(b->channel_weight.size()) != b->cols) throw Napi::RangeError::New(env, "quantizeMatrix: channelWeight needs one value per input column");
    const Napi::Value cov = job.Get("covariance");
    if (!cov.IsUndefined() && !cov.IsNull()) {
      b->covariance = copy_typed<float>(cov, "covariance");
      if (int64_t(b->covariance.size()) != b->cols * b->cols) throw Napi::RangeError::New(env, "quantizeMatrix: covariance must be [cols, cols]");
    }
  }

  auto deferred = Napi::Promise::Deferred::New(env);
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node quantize", 0, 1);
  const bool posted = host->executor.post([host, b, deferred, tsfn]() mutable {
    b->params.channel_weight = b->channel_weight.empty() ? nullptr : b->channel_weight.data();
    b->params.covariance = b->covariance.empty() ? nullptr : b->covariance.data();
    b->status = quant::quantize_input(b->bytes, b->n_bytes, b->dtype, b->rows, b->cols, b->scheme, b->in_scales.data(),
                                      b->in_scales.size(), b->params, &host->pool, &host->weight, &b->result);
    tsfn.BlockingCall([b, deferred](Napi::Env env, Napi::Function) {
      b->input.Reset();
      guarded_js([&] {
        if (!b->status.is_ok()) {
          deferred.Reject(status_error(env, b->status).Value());
          return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("data", to_buffer(env, std::move(b->result.data)));
        o.Set("scales", to_buffer(env, std::move(b->result.scales)));
        o.Set("err2", b->result.err2);
        o.Set("ref2", b->result.ref2);
        o.Set("werr2", b->result.werr2);
        o.Set("wref2", b->result.wref2);
        deferred.Resolve(o);
      });
    });
    tsfn.Release();
  });
  if (!posted) {
    b->input.Reset();
    tsfn.Release();
    deferred.Reject(status_error(env, Status::error(ErrorCode::Disposed, "quantizer is disposed")).Value());
  }
  return deferred.Promise();
}

Napi::Value collect_activation_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string dir = info[0].ToString().Utf8Value();
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "collectActivationStats: sequences must be an array of Int32Arrays");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<std::vector<int32_t>> seqs(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) seqs[i] = copy_typed<int32_t>(arr.Get(i), "sequence");
  quant::CalibrationOptions opts;
  if (info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("threads").IsNumber()) opts.threads = o.Get("threads").As<Napi::Number>().Int32Value();
    if (o.Get("minExpertTokens").IsNumber()) opts.min_expert_tokens = o.Get("minExpertTokens").As<Napi::Number>().Int64Value();
    if (o.Get("covarianceBudgetBytes").IsNumber()) opts.covariance_budget_bytes = uint64_t(std::max(0.0, o.Get("covarianceBudgetBytes").As<Napi::Number>().DoubleValue()));
  }
  AbortToken token = abort_token_from(info[3]);

  struct Ctx {
    Napi::Promise::Deferred deferred;
    Napi::FunctionReference on_progress;
    quant::CalibrationStats stats;
    Status status;
  };
  auto* ctx = new Ctx{Napi::Promise::Deferred::New(env), {}, {}, Status::ok()};
  if (info[4].IsFunction()) ctx->on_progress = Napi::Persistent(info[4].As<Napi::Function>());
  Napi::Promise promise = ctx->deferred.Promise();
  // Progress and completion share one channel, so every progress call runs before the promise settles.
  auto channel = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node calibrate", 0, 1);
  std::thread([dir, seqs = std::move(seqs), opts, token, ctx, channel]() mutable {
    LoadOptions lo;
    lo.backend = BackendChoice::Cpu;
    lo.threads = opts.threads;
    lo.draft_tokens = 0;
    std::unique_ptr<Model> model;
    ctx->status = Model::load(dir, lo, nullptr, token.get(), &model);
    if (ctx->status.is_ok()) {
      quant::CalibrationProgress progress;
      if (!ctx->on_progress.IsEmpty()) {
        progress = [&](int64_t done, int64_t total) {
          auto* r = new std::pair<double, double>(double(done), double(total));
          napi_status s = channel.NonBlockingCall(r, [ctx](Napi::Env env, Napi::Function, std::pair<double, double>* r) {
            guarded_js([&] { ctx->on_progress.Call({Napi::Number::New(env, r->first), Napi::Number::New(env, r->second)}); });
            delete r;
          });
          if (s != napi_ok) delete r;
        };
      }
      ctx->status = quant::collect_activation_stats(*model, seqs, opts, token.get(), progress, &ctx->stats);
      model.reset();
    }
    channel.BlockingCall([ctx](Napi::Env env, Napi::Function) {
      guarded_js([&] {
        if (!ctx->status.is_ok()) {
          ctx->deferred.Reject(status_error(env, ctx->status).Value());
          return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("tokens", double(ctx->stats.tokens));
        Napi::Object inputs = Napi::Object::New(env), input_tokens = Napi::Object::New(env), covariances = Napi::Object::New(env);
        for (const auto& [key, s] : ctx->stats.inputs) {
          if (!s.sum_xx.empty() && s.tokens > 0) {
            auto cov = Napi::Float32Array::New(env, s.sum_xx.size());
            for (size_t i = 0; i < s.sum_xx.size(); ++i) cov[i] = float(s.sum_xx[i] / double(s.tokens));
            covariances.Set(key, cov);
          }
          auto mean = Napi::Float32Array::New(env, s.sum_sq.size());
          for (size_t c = 0; c < s.sum_sq.size(); ++c) mean[c] = s.tokens > 0 ? float(s.sum_sq[c] / double(s.tokens)) : 0.0f;
          inputs.Set(key, mean);
          input_tokens.Set(key, double(s.tokens));
        }
        o.Set("inputs", inputs);
        o.Set("covariances", covariances);
        o.Set("inputTokens", input_tokens);
        Napi::Object modules = Napi::Object::New(env), experts = Napi::Object::New(env);
        for (const auto& [m, key] : ctx->stats.module_input) modules.Set(m, key);
        for (const auto& [p, n] : ctx->stats.expert_tokens) experts.Set(p, double(n));
        o.Set("modules", modules);
        o.Set("expertTokens", experts);
        ctx->deferred.Resolve(o);
      });
      delete ctx;
    });
    channel.Release();
  }).detach();
  return promise;
}

}  // namespace

void register_quantizer(Napi::Env env, Napi::Object exports) {
  exports.Set("createQuantizer", Napi::Function::New(env, create_quantizer, "createQuantizer"));
  exports.Set("disposeQuantizer", Napi::Function::New(env, dispose_quantizer, "disposeQuantizer"));
  exports.Set("quantizeMatrix", Napi::Function::New(env, quantize_matrix, "quantizeMatrix"));
  exports.Set("collectActivationStats", Napi::Function::New(env, collect_activation_stats, "collectActivationStats"));
}

}  // namespace glm::addon
