// out[r, :] = x[index[r], :] for r < rows (fp32, row length cols): picks the rows whose logits are
// needed (each sequence's last prefill row) before lm_head, so the vocab-wide GEMM runs on those rows
// only. A negative index writes a zero row (padding). One block row per output row, grid-stride over cols.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

// ptxas: hot gather_rows_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(256) gather_rows_kernel(float* out, const float* x, const int32_t* index, int64_t cols) {
  const int64_t r = blockIdx.x;
  const int32_t src = index[r];
  for (int64_t c = threadIdx.x; c < cols; c += 256) out[r * cols + c] = src >= 0 ? x[int64_t(src) * cols + c] : 0.0f;
}

}  // namespace

Status gather_rows(Stream stream, float* out, const float* x, const int32_t* index, int64_t rows, int64_t cols) {
  const char* op = "gather_rows";
  if (!out || !x || !index) return detail::invalid(op, "null pointer");
  if (rows < 0 || rows > 0x7fffffff || cols <= 0) return detail::invalid(op, "bad rows / cols");
  if (rows == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(gather_rows_kernel, dim3(unsigned(rows)), dim3(256), 0, detail::to_stream(stream.handle), out,
                                         x, index, cols));
}

}  // namespace glm::cuda
