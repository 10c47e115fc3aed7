// Baton → engine thread → promise (DESIGN.md rule 8). The JS thread converts inputs into an engine
// Request (plain C++), the model's scheduler runs it on the engine thread in shared steps, and its
// completion becomes JS values back on the JS thread through a thread-safe function.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

#include "addon/host.h"

namespace glm::addon {

// Submits `req` to host's scheduler and settles the returned promise with `to_js(env, req)` or its
// Status. `owners` are the sessions it touches: their lengths are published before the promise
// settles, and an abort caused by their (or the model's) dispose rejects as DISPOSED. `token` is the
// request's abort flag (an AbortSignal's AbortFlag, or a fresh one).
template <class Req>
Napi::Promise submit_request(Napi::Env env, std::shared_ptr<ModelHost> host, std::vector<std::shared_ptr<SessionState>> owners,
                             AbortToken token, std::shared_ptr<Req> req, std::function<Napi::Value(Napi::Env, Req&)> to_js) {
  auto deferred = Napi::Promise::Deferred::New(env);
  const auto disposed_owner = [&owners] {
    for (const auto& o : owners) {
      if (o->disposed) return true;
    }
    return false;
  };
  if (host->disposed || disposed_owner()) {
    deferred.Reject(status_error(env, Status::error(ErrorCode::Disposed, host->disposed ? "model is disposed" : "session is disposed")).Value());
    return deferred.Promise();
  }
  struct Ctx {
    Napi::Promise::Deferred deferred;
    std::shared_ptr<Req> req;
    Status status;
  };
  auto* ctx = new Ctx{deferred, req, Status::ok()};
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "glm-node request", 0, 1);
  std::vector<const SessionState*> raw;
  for (const auto& o : owners) raw.push_back(o.get());
  host->track(raw, token);
  req->cancel = token;
  // Engine thread, once: the sessions are settled; publish their lengths, then settle the promise.
  req->on_done = [host, owners, token, to_js, ctx, tsfn](Request& r) mutable {
    if (r.release_hook) r.release_hook();
    for (const auto& o : owners) o->publish_length();
    ctx->status = r.status;
    bool disposed = host->disposed;
    for (const auto& o : owners) disposed = disposed || o->disposed;
    if (ctx->status.code() == ErrorCode::Aborted && disposed) {
      ctx->status = Status::error(ErrorCode::Disposed, "disposed while the operation was running");
    }
    host->untrack(token);
    host->refresh_memory();
    tsfn.BlockingCall([host, to_js, ctx](Napi::Env env, Napi::Function) {
      guarded_js([&] {
        // Native memory is reported to V8 so GC pressure reflects KV pages and scratch buffers.
        const int64_t now = int64_t(host->kv_bytes + host->scratch_bytes);
        Napi::MemoryManagement::AdjustExternalMemory(env, now - host->reported_external_bytes);
        host->reported_external_bytes = now;
        if (ctx->status.is_ok()) {
          try {
            ctx->deferred.Resolve(to_js(env, *ctx->req));
          } catch (const Napi::Error& e) {
            ctx->deferred.Reject(e.Value());
          }
        } else {
          ctx->deferred.Reject(status_error(env, ctx->status).Value());
        }
      });
      delete ctx;
    });
    tsfn.Release();
  };
  std::shared_ptr<Request> base = req;
  const bool posted = host->executor.post([host, base] {
    if (!host->model) {
      base->status = Status::error(ErrorCode::Disposed, "model is disposed");
      base->phase = Request::Phase::Done;
      if (base->on_done) base->on_done(*base);
      return;
    }
    host->model->submit(base);
    pump(host);
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
