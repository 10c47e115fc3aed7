// N-API entry point: registers the wrapped classes and the loadModel function. Glue only: no math,
// no policy (lib/ validates options; the engine does the work).
#include <napi.h>

#include <thread>

#include "addon/grammar_binding.h"
#include "addon/host.h"
#include "cpu/bandwidth.h"
#include "cpu/kernels.h"
#include "engine/cuda_factory.h"

namespace glm::addon {
Napi::Function define_abort_flag(Napi::Env env);
Napi::Function define_model(Napi::Env env);
Napi::Function define_session(Napi::Env env);
Napi::Value load_model(const Napi::CallbackInfo& info);
void register_quantizer(Napi::Env env, Napi::Object exports);
}  // namespace glm::addon

namespace {

// measureReadBandwidth(bytes, threads, minSeconds) -> Promise<{bytesPerSecond, passes, bufferBytes}>
// A benchmark helper: runs on its own thread so the JS thread stays free.
Napi::Value measure_read_bandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  const int threads = info[1].As<Napi::Number>().Int32Value();
  const double min_seconds = info[2].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 4096 && bytes <= 64e9) || threads < 1 || threads > 1024 || !(min_seconds >= 0 && min_seconds <= 60)) {
    throw Napi::RangeError::New(env, "measureReadBandwidth: bytes in [4096, 64e9], threads in [1, 1024], minSeconds in [0, 60]");
  }
  auto deferred = Napi::Promise::Deferred::New(env);
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node bandwidth", 0, 1);
  std::thread([deferred, tsfn, bytes, threads, min_seconds]() mutable {
    glm::cpu::BandwidthResult r;
    bool ok = true;
    try {
      glm::cpu::ThreadPool pool(threads);
      r = glm::cpu::measure_read_bandwidth(pool, uint64_t(bytes), min_seconds);
    } catch (const std::bad_alloc&) {
      ok = false;
    }
    tsfn.BlockingCall([deferred, r, ok](Napi::Env env, Napi::Function) {
      glm::addon::guarded_js([&] {
        if (!ok) {
          deferred.Reject(glm::addon::status_error(env, glm::Status::error(glm::ErrorCode::InsufficientMemory,
                                                                             "cannot allocate the bandwidth buffer")).Value());
          return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("bytesPerSecond", r.bytes_per_second);
        o.Set("passes", r.passes);
        o.Set("bufferBytes", double(r.buffer_bytes));
        deferred.Resolve(o);
      });
    });
    tsfn.Release();
  }).detach();
  return deferred.Promise();
}

// cudaProbe() -> {ok: true, device} | {ok: false, reason}: the CUDA self-test, run only in the loader's
// probe child (lib/cuda-probe.ts); synchronous because that child does nothing else.
Napi::Value cuda_probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string device;
  glm::Status st = glm::cuda_probe(&device);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, st.is_ok()));
  if (st.is_ok()) out.Set("device", Napi::String::New(env, device));
  else out.Set("reason", Napi::String::New(env, st.message()));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace glm::addon;
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function abort_flag = define_abort_flag(env);
  data->abort_ctor = Napi::Persistent(abort_flag);
  data->model_ctor = Napi::Persistent(define_model(env));
  data->session_ctor = Napi::Persistent(define_session(env));
  exports.Set("AbortFlag", abort_flag);
  exports.Set("loadModel", Napi::Function::New(env, load_model, "loadModel"));
  exports.Set("measureReadBandwidth", Napi::Function::New(env, measure_read_bandwidth, "measureReadBandwidth"));
  exports.Set("cudaProbe", Napi::Function::New(env, cuda_probe, "cudaProbe"));
  exports.Set("jsonSchemaToGbnf", Napi::Function::New(env, json_schema_to_gbnf_js, "jsonSchemaToGbnf"));
  register_quantizer(env, exports);  // createQuantizer, quantizeMatrix, collectActivationStats (quantize_job.cc)
  exports.Set("cpuIsa", Napi::String::New(env, glm::cpu::isa_name(glm::cpu::active_isa())));
  return exports;
}

}  // namespace

NODE_API_MODULE(glm_node, Init)
