// The engine's only view of the CUDA backend: two functions, defined by cpp/cuda_backend/ when the
// build has CUDA (or, in the harness test binary, the CPU execution harness) and by
// cpp/cuda_backend/no_cuda.cc otherwise, so the engine itself never includes a CUDA header.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace glm {

struct CudaBackendOptions {
  int64_t max_step_rows = 512;     // rows of the largest step (sizes the activation buffers)
  KvPoolRequest kv;                // the KV page pool (kv.bytes 0: what is left of the free memory after the rest)
  const std::atomic<bool>* cancel = nullptr;  // checked between weight uploads
  bool graphs = true;              // capture decode steps as CUDA graphs and replay them (off: every step eager)
  bool device_sampling = true;     // sampled decode steps choose their token on the device (off: logits downloaded)
};

// Ok when a CUDA device of compute capability >= 8.0 is usable here; otherwise BackendUnavailable
// with a one-line reason (no CUDA in this build, no driver, no device, too old a device).
Status cuda_backend_available();

// cuda_backend_available, then one tiny kernel run and checked on device 0. Ok: *device describes it
// (name, compute capability, SMs, driver). Run by the JS loader in a child process (lib/cuda-probe.ts).
Status cuda_probe(std::string* device);

// Plans device memory, uploads the weights and returns the backend. InsufficientMemory names the
// bytes needed and available; UnsupportedFormat for weights it cannot run yet.
Status create_cuda_backend(const ModelConfig& cfg, const ModelWeights& weights, const CudaBackendOptions& opts,
                           std::unique_ptr<Backend>* out);

}  // namespace glm
