// out[r, :] = [a[r, :], b[r, :]] for r < rows (fp32): the MTP layer's eh_proj input, the embedding half
// first (spec §3). One block per output row, grid-stride over its columns.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

// ptxas: hot concat_cols_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(256) concat_cols_kernel(float* out, const float* a, const float* b, int64_t a_cols,
                                                          int64_t b_cols) {
  const int64_t r = blockIdx.x, cols = a_cols + b_cols;
  for (int64_t c = threadIdx.x; c < cols; c += 256) {
    out[r * cols + c] = c < a_cols ? a[r * a_cols + c] : b[r * b_cols + (c - a_cols)];
  }
}

}  // namespace

Status concat_cols(Stream stream, float* out, const float* a, const float* b, int64_t rows, int64_t a_cols, int64_t b_cols) {
  const char* op = "concat_cols";
  if (!out || !a || !b) return detail::invalid(op, "null pointer");
  if (rows < 0 || rows > 0x7fffffff || a_cols <= 0 || b_cols <= 0) return detail::invalid(op, "bad rows / cols");
  if (out == a || out == b) return detail::invalid(op, "out may not alias an input");
  if (rows == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(concat_cols_kernel, dim3(unsigned(rows)), dim3(256), 0, detail::to_stream(stream.handle),
                                         out, a, b, a_cols, b_cols));
}

}  // namespace glm::cuda
