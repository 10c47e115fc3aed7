// Errors are values until the N-API boundary (DESIGN.md rule 6): every fallible engine call returns a
// Status; the addon turns its code into a typed JS error (lib/errors.ts) with the same stable name.
#pragma once
#include <string>
#include <utility>

namespace glm {

enum class ErrorCode {
  Ok = 0,
  ModelFormat,         // malformed or inconsistent checkpoint / config / header
  UnsupportedFormat,   // well-formed but not something we run (pickle, unknown architecture, dtype)
  ModelLoad,           // I/O: missing path, permissions, not a directory
  InsufficientMemory,  // an allocation plan does not fit
  ContextOverflow,     // tokens exceed a session's context length
  InvalidParam,        // a request option out of range
  InvalidToken,        // a token id outside the vocabulary
  Aborted,             // cancelled through an AbortSignal
  Disposed,            // used after dispose()
  EngineDead,          // a previous fatal error poisoned the model
  Numerical,           // non-finite values where finite ones are required
  Internal,            // a broken invariant inside the engine (a bug)
  BackendUnavailable,  // the requested backend is not in this build or finds no usable device
  QueueFull,           // the model's request queue is at maxQueuedRequests
};

// Stable names shared with lib/errors.ts; never rename one.
inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::Ok: return "OK";
    case ErrorCode::ModelFormat: return "MODEL_FORMAT";
    case ErrorCode::UnsupportedFormat: return "UNSUPPORTED_FORMAT";
    case ErrorCode::ModelLoad: return "MODEL_LOAD";
    case ErrorCode::InsufficientMemory: return "INSUFFICIENT_MEMORY";
    case ErrorCode::ContextOverflow: return "CONTEXT_OVERFLOW";
    case ErrorCode::InvalidParam: return "INVALID_PARAM";
    case ErrorCode::InvalidToken: return "INVALID_TOKEN";
    case ErrorCode::Aborted: return "ABORTED";
    case ErrorCode::Disposed: return "DISPOSED";
    case ErrorCode::EngineDead: return "ENGINE_DEAD";
    case ErrorCode::Numerical: return "NUMERICAL";
    case ErrorCode::Internal: return "INTERNAL";
    case ErrorCode::BackendUnavailable: return "BACKEND_UNAVAILABLE";
    case ErrorCode::QueueFull: return "QUEUE_FULL";
  }
  return "INTERNAL";
}

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(ErrorCode code, std::string message) { return Status(code, std::move(message)); }

  bool is_ok() const { return code_ == ErrorCode::Ok; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  ErrorCode code_ = ErrorCode::Ok;
  std::string message_;
};

#define GLM_TRY(expr)                         \
  do {                                        \
    ::glm::Status glm_try_status_ = (expr);   \
    if (!glm_try_status_.is_ok()) return glm_try_status_; \
  } while (0)

inline Status format_error(std::string message) { return Status::error(ErrorCode::ModelFormat, std::move(message)); }

}  // namespace glm
