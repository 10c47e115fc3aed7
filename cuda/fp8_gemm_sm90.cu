// FP8 GEMM, Hopper fast path (placeholder until the wgmma kernel lands).
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
bool fp8_gemm_sm90_available() { return false; }
Status fp8_gemm_sm90(Stream, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m) {
  Status st = detail::check_fp8_gemm("fp8_gemm_sm90", y, xq, x_scales, w, m);
  if (!st.is_ok()) return st;
  return Status::error(ErrorCode::UnsupportedFormat, "fp8_gemm_sm90: not built for sm_90a");
}
}  // namespace glm::cuda
