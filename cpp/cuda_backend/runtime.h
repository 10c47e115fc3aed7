// The CUDA runtime as host code of the backend sees it: the real one (GLM_WITH_CUDA build, linked into
// the addon) or the CPU execution harness (GLM_CUDA_HARNESS, the test binary), which emulates the slice
// of the runtime used here (cudaMalloc/Free, cudaMemcpy(Async), cudaMemsetAsync, streams,
// cudaMemGetInfo, device attributes). Everything else in cpp/cuda_backend is plain C++.
#pragma once

#if defined(GLM_CUDA_HARNESS)
#include "harness/harness.h"
#else
#include <cuda_runtime.h>
#endif

#include <string>

#include "engine/status.h"

namespace glm::cuda_backend {

// A failed runtime call. Allocation failures are InsufficientMemory (the context stays usable); any
// other error is EngineDead: after a failed copy or launch the device state can no longer be trusted.
inline Status runtime_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  const std::string msg = std::string(what) + ": CUDA error " + std::to_string(int(err)) + ": " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) return Status::error(ErrorCode::InsufficientMemory, msg);
  return Status::error(ErrorCode::EngineDead, msg);
}

}  // namespace glm::cuda_backend
