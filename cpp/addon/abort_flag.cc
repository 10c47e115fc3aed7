// AbortFlag: the native side of an AbortSignal. lib/ calls abort() from the signal's listener; jobs
// poll the shared atomic between forward steps / layers.
#include "addon/host.h"

namespace glm::addon {

class AbortFlag : public Napi::ObjectWrap<AbortFlag> {
 public:
  explicit AbortFlag(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<AbortFlag>(info), token_(std::make_shared<std::atomic<bool>>(false)) {}
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    token_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value Aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), token_->load()); }
  const AbortToken& token() const { return token_; }

 private:
  AbortToken token_;
};

Napi::Function define_abort_flag(Napi::Env env) {
  return AbortFlag::DefineClass(env, "AbortFlag",
                                {AbortFlag::InstanceMethod("abort", &AbortFlag::Abort),
                                 AbortFlag::InstanceAccessor("aborted", &AbortFlag::Aborted, nullptr)});
}

// The token of an AbortFlag argument, or a fresh never-set token when the argument is undefined.
AbortToken abort_token_from(const Napi::Value& v) {
  if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    AddonData* data = v.Env().GetInstanceData<AddonData>();
    if (o.InstanceOf(data->abort_ctor.Value())) return AbortFlag::Unwrap(o)->token();
  }
  if (!v.IsUndefined() && !v.IsNull()) throw Napi::TypeError::New(v.Env(), "expected an AbortFlag");
  return std::make_shared<std::atomic<bool>>(false);
}

}  // namespace glm::addon
