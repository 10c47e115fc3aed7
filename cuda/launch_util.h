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

#include "ops.h"
namespace glm::cuda::detail {
// Shared argument checks of fp8_gemm and its sm_90a twin (fp8_gemm.cu).
Status check_fp8_gemm(const char* op, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m);
}  // namespace glm::cuda::detail
namespace glm::cuda::detail {
// Shared argument checks of linear_gemv and linear_gemm (linear_gemv.cu).
Status check_linear(const char* op, float* y, const float* x, const LinearWeight& w, const LinearArgs& args);
}  // namespace glm::cuda::detail
namespace glm::cuda::detail {
// Shared argument checks of fp8_gemv and fp8_dequant_gemm (fp8_gemv.cu).
Status check_fp8_linear(const char* op, float* y, const float* x, const Fp8Weight& w, int64_t m);
}  // namespace glm::cuda::detail
