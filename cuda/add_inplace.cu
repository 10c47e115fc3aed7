// y[i] += x[i] (fp32): the residual add where no fused add_rmsnorm follows (the last layer's output
// before the final norm is fused; this covers the rest, e.g. a shared expert computed apart). Exact
// fp32 sums, elementwise, grid-stride.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

// ptxas: hot add_inplace_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(256) add_inplace_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * 256 + threadIdx.x; i < n; i += int64_t(gridDim.x) * 256) y[i] += x[i];
}

}  // namespace

Status add_inplace(Stream stream, float* y, const float* x, int64_t n) {
  const char* op = "add_inplace";
  if (!y || !x) return detail::invalid(op, "null pointer");
  if (n < 0) return detail::invalid(op, "negative n");
  if (n == 0) return Status::ok();
  const int64_t blocks = (n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536;
  return detail::launched(op, GLM_LAUNCH(add_inplace_kernel, dim3(unsigned(blocks)), dim3(256), 0, detail::to_stream(stream.handle), y,
                                         x, n));
}

}  // namespace glm::cuda
