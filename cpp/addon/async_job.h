// Baton → engine thread → promise (DESIGN.md rule 8). The JS thread converts inputs into a baton
// (plain C++), the job runs on the model's executor touching only the baton and engine objects, and
// the result becomes JS values back on the JS thread through a thread-safe function.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

#include "addon/host.h"

namespace glm::addon {

// Runs `work` on host's executor and settles the returned promise with `to_js(env)` or the Status.
// `owner` ties the job to a session (session.dispose() aborts it); `token` is its abort flag (also
// set by an AbortSignal through an AbortFlag object). Aborts caused by dispose reject as DISPOSED.
template <class Baton>
Napi::Promise run_job(Napi::Env env, std::shared_ptr<ModelHost> host, std::shared_ptr<SessionState> owner,
                      AbortToken token, std::shared_ptr<Baton> baton,
                      std::function<Status(ModelHost&, Baton&, const std::atomic<bool>*)> work,
                      std::function<Napi::Value(Napi::Env, Baton&)> to_js) {
  auto deferred = Napi::Promise::Deferred::New(env);
  if (host->disposed || (owner && owner->disposed)) {
    deferred.Reject(status_error(env, Status::error(ErrorCode::Disposed, owner && owner->disposed ? "session is disposed" : "model is disposed")).Value());
    return deferred.Promise();
  }
  struct Ctx {
    Napi::Promise::Deferred deferred;
    Status status;
  };
  auto* ctx = new Ctx{deferred, Status::ok()};
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node job", 0, 1);
  host->track(owner.get(), token);
  const bool posted = host->executor.post([host, owner, token, baton, work, to_js, ctx, tsfn]() mutable {
    if (token->load()) {
      ctx->status = Status::error(ErrorCode::Aborted, "aborted before it started");
    } else if (host->disposed || (owner && owner->disposed)) {
      ctx->status = Status::error(ErrorCode::Disposed, owner && owner->disposed ? "session is disposed" : "model is disposed");
    } else {
      ctx->status = work(*host, *baton, token.get());
      if (owner) owner->publish_length();
      host->refresh_memory();
    }
    if (ctx->status.code() == ErrorCode::Aborted && (host->disposed || (owner && owner->disposed))) {
      ctx->status = Status::error(ErrorCode::Disposed, "disposed while the operation was running");
    }
    host->untrack(token);
    tsfn.BlockingCall([host, baton, to_js, ctx](Napi::Env env, Napi::Function) {
      // Native memory is reported to V8 so GC pressure reflects KV caches and scratch buffers.
      const int64_t now = int64_t(host->kv_bytes + host->scratch_bytes);
      Napi::MemoryManagement::AdjustExternalMemory(env, now - host->reported_external_bytes);
      host->reported_external_bytes = now;
      if (ctx->status.is_ok()) {
        try {
          ctx->deferred.Resolve(to_js(env, *baton));
        } catch (const Napi::Error& e) {
          ctx->deferred.Reject(e.Value());
        }
      } else {
        ctx->deferred.Reject(status_error(env, ctx->status).Value());
      }
      delete ctx;
    });
    tsfn.Release();
  });
  if (!posted) {
    host->untrack(token);
    tsfn.Release();
    delete ctx;
    deferred.Reject(status_error(env, Status::error(ErrorCode::Disposed, "model is disposed")).Value());
  }
  return deferred.Promise();
}

}  // namespace glm::addon
