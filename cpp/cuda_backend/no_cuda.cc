// The CUDA backend's entry points in a build without CUDA (no nvcc at build time): 'cuda' is a typed
// BackendUnavailable error and 'auto' falls back to the CPU with this reason.
#include "engine/cuda_factory.h"

namespace glm {

Status cuda_backend_available() {
  return Status::error(ErrorCode::BackendUnavailable,
                       "this build of glm-node has no CUDA support (the CPU-only addon: built with GLM_CUDA=OFF or without nvcc)");
}

Status cuda_probe(std::string*) { return cuda_backend_available(); }

Status create_cuda_backend(const ModelConfig&, const ModelWeights&, const CudaBackendOptions&, std::unique_ptr<Backend>*) {
  return cuda_backend_available();
}

}  // namespace glm
