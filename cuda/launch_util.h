// Helpers shared by launchers (host side only).
#pragma once
#include <cstdint>
#include <string>

#include "common.cuh"
#include "engine/status.h"

namespace glm::cuda::detail {

inline Status invalid(const char* op, const std::string& what) {
  return Status::error(ErrorCode::Internal, std::string(op) + ": " + what);
}
inline Status launched(const char* op, cudaError_t err) {
  if (err == cudaSuccess) return Status::ok();
  return Status::error(ErrorCode::EngineDead, std::string(op) + ": CUDA error: " + cudaGetErrorString(err));
}
inline bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }
inline cudaStream_t to_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace glm::cuda::detail
