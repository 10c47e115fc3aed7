// N-API entry point: registers the wrapped classes and the loadModel function. Glue only: no math,
// no policy (lib/ validates options; the engine does the work).
#include <napi.h>

#include "addon/host.h"
#include "cpu/kernels.h"

namespace glm::addon {
Napi::Function define_abort_flag(Napi::Env env);
Napi::Function define_model(Napi::Env env);
Napi::Function define_session(Napi::Env env);
Napi::Value load_model(const Napi::CallbackInfo& info);
}  // namespace glm::addon

namespace {

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
  exports.Set("cpuIsa", Napi::String::New(env, glm::cpu::isa_name(glm::cpu::active_isa())));
  return exports;
}

}  // namespace

NODE_API_MODULE(glm_node, Init)
