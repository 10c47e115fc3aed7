// AbortFlag: the native side of an AbortSignal. lib/ calls abort() from the signal's listener; jobs
// poll the shared atomic between forward steps / layers. requestStop() is the gentle twin used by a
// generation: finish after the current token without an error (a stop string matched in JS).
#include "addon/host.h"

namespace glm::addon {

class AbortFlag : public Napi::ObjectWrap<AbortFlag> {
 public:
  explicit AbortFlag(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<AbortFlag>(info),
        token_(std::make_shared<std::atomic<bool>>(false)),
        stop_(std::make_shared<std::atomic<bool>>(false)) {}
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    token_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value RequestStop(const Napi::CallbackInfo& info) {
    stop_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value Aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), token_->load()); }
  const AbortToken& token() const { return token_; }
  const AbortToken& stop() const { return stop_; }

 private:
  AbortToken token_;
  AbortToken stop_;
};

Napi::Function define_abort_flag(Napi::Env env) {
  return AbortFlag::DefineClass(env, "AbortFlag",
                                {AbortFlag::InstanceMethod("abort", &AbortFlag::Abort),
                                 AbortFlag::InstanceMethod("requestStop", &AbortFlag::RequestStop),
                                 AbortFlag::InstanceAccessor("aborted", &AbortFlag::Aborted, nullptr)});
}

namespace {
AbortFlag* unwrap_flag(const Napi::Value& v) {
  if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    AddonData* data = v.Env().GetInstanceData<AddonData>();
    if (o.InstanceOf(data->abort_ctor.Value())) return AbortFlag::Unwrap(o);
  }
  if (!v.IsUndefined() && !v.IsNull()) throw Napi::TypeError::New(v.Env(), "expected an AbortFlag");
  return nullptr;
}
}  // namespace

// The abort token of an AbortFlag argument, or a fresh never-set token when the argument is undefined.
AbortToken abort_token_from(const Napi::Value& v) {
  AbortFlag* f = unwrap_flag(v);
  return f ? f->token() : std::make_shared<std::atomic<bool>>(false);
}

// The stop token of an AbortFlag argument (see requestStop), or a fresh never-set token.
AbortToken stop_token_from(const Napi::Value& v) {
  AbortFlag* f = unwrap_flag(v);
  return f ? f->stop() : std::make_shared<std::atomic<bool>>(false);
}

}  // namespace glm::addon
