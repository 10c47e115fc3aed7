// Element-wise steps of the MLP blocks that no fused kernel covers yet: act_fn(gate) * up for the
// dense / shared-expert SwiGLU of any weight dtype, and y += x for adding a block's output into the
// residual stream. Bandwidth-bound and tiny next to the projections around them; a grid-stride loop
// over float4 where the pointers allow (all engine buffers are 256-byte aligned), scalars otherwise.
// silu matches the CPU backend's x / (1 + exp(-x)) in fp32 (the harness uses exact host expf; the
// device's expf differs by ~2 ulp, well inside every end-to-end budget).
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

GLM_DEVICE float silu(float x) { return x / (1.0f + expf(-x)); }

// ptxas: hot silu_mul_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) silu_mul_kernel(float* gate, const float* up, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) gate[i] = silu(gate[i]) * up[i];
}

// ptxas: hot add_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) add_kernel(float* y, const float* x, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] += x[i];
}

dim3 grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return dim3(unsigned(blocks < 1 ? 1 : blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace

Status silu_mul(Stream stream, float* gate, const float* up, int64_t n) {
  const char* op = "silu_mul";
  if (!gate || !up) return detail::invalid(op, "null pointer");
  if (n < 0) return detail::invalid(op, "negative size");
  if (n == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(silu_mul_kernel, grid_for(n), dim3(kThreads), 0, detail::to_stream(stream.handle),
                                         gate, up, n));
}

Status add_inplace(Stream stream, float* y, const float* x, int64_t n) {
  const char* op = "add_inplace";
  if (!y || !x) return detail::invalid(op, "null pointer");
  if (n < 0) return detail::invalid(op, "negative size");
  if (n == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(add_kernel, grid_for(n), dim3(kThreads), 0, detail::to_stream(stream.handle), y, x, n));
}

}  // namespace glm::cuda
