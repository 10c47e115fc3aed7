// SwiGLU activation: out[i] = silu(gate[i]) * up[i] with silu(x) = x / (1 + exp(-x)) in fp32 (the CPU
// backend's act_fn(gate) * up). For the unfused MLP path (shared expert, dense layers) between two
// `linear` calls; out may alias gate or up. Elementwise, grid-stride.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

// ptxas: hot silu_mul_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(256) silu_mul_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * 256 + threadIdx.x; i < n; i += int64_t(gridDim.x) * 256) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

}  // namespace

Status silu_mul(Stream stream, float* out, const float* gate, const float* up, int64_t n) {
  const char* op = "silu_mul";
  if (!out || !gate || !up) return detail::invalid(op, "null pointer");
  if (n < 0) return detail::invalid(op, "negative n");
  if (n == 0) return Status::ok();
  const int64_t blocks = (n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536;
  return detail::launched(op, GLM_LAUNCH(silu_mul_kernel, dim3(unsigned(blocks)), dim3(256), 0, detail::to_stream(stream.handle),
                                         out, gate, up, n));
}

}  // namespace glm::cuda
