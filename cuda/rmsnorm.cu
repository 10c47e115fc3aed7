// RMSNorm per row, plain and fused with the residual add (input_layernorm / post_attention_layernorm /
// model.norm). y = w * (x * rsqrt(mean(x^2) + eps)), HF order (spec §2). One block per row; the sum of
// squares is reduced in fp32 (warp shuffles, then one value per warp through shared memory). The CPU
// reference sums in double, so the tests budget fp32 reassociation of a length-n sum.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kMaxThreads = 512;

// ptxas: hot rmsnorm_kernel
template <bool kResidual>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kMaxThreads) rmsnorm_kernel(float* out, float* residual, const float* x,
                                                              const float* w, int64_t n, float eps) {
  GLM_SHARED(float, warp_partial, 32);
  GLM_SHARED(float, inv_rms, 1);
  const int64_t row = blockIdx.x;
  const float* xr = x + row * n;
  float* rr = kResidual ? residual + row * n : nullptr;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, n_warps = int(blockDim.x) >> 5;

  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = xr[i];
    if (kResidual) {
      v += rr[i];
      rr[i] = v;  // the updated residual stream; re-read below by this same thread only
    }
    ss += v * v;
  }
  ss = dev::warp_sum(ss);
  if (lane == 0) warp_partial[warp] = ss;
  __syncthreads();
  if (warp == 0) {
    float t = lane < n_warps ? warp_partial[lane] : 0.0f;
    t = dev::warp_sum(t);
    if (lane == 0) *inv_rms = rsqrtf(t / float(n) + eps);
  }
  __syncthreads();
  const float inv = *inv_rms;
  float* o = out + row * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = kResidual ? rr[i] : xr[i];
    o[i] = w[i] * (v * inv);
  }
}

Status launch(const char* op, float* out, float* residual, const float* x, const float* w, int64_t rows, int64_t n,
              float eps, Stream stream) {
  if (!out || !x || !w) return detail::invalid(op, "null pointer");
  if (rows < 0 || n <= 0) return detail::invalid(op, "bad dimensions");
  if (rows > 0x7fffffff) return detail::invalid(op, "too many rows");
  if (!(eps >= 0.0f)) return detail::invalid(op, "eps must be >= 0");
  if (rows == 0) return Status::ok();
  // Enough threads for ~4 elements each, whole warps, at most kMaxThreads.
  int64_t threads = ((n + 3) / 4 + 31) / 32 * 32;
  threads = threads < 32 ? 32 : threads > kMaxThreads ? kMaxThreads : threads;
  const dim3 grid = dim3(unsigned(rows)), block = dim3(unsigned(threads));
  const cudaStream_t s = detail::to_stream(stream.handle);
  const cudaError_t err = residual ? GLM_LAUNCH(rmsnorm_kernel<true>, grid, block, 0, s, out, residual, x, w, n, eps)
                                   : GLM_LAUNCH(rmsnorm_kernel<false>, grid, block, 0, s, out, residual, x, w, n, eps);
  return detail::launched(op, err);
}

}  // namespace

Status rmsnorm(Stream stream, float* out, const float* x, const float* w, int64_t rows, int64_t n, float eps) {
  return launch("rmsnorm", out, nullptr, x, w, rows, n, eps, stream);
}

Status add_rmsnorm(Stream stream, float* out, float* residual, const float* x, const float* w, int64_t rows,
                   int64_t n, float eps) {
  if (!residual) return detail::invalid("add_rmsnorm", "null residual");
  if (residual == x || residual == out) return detail::invalid("add_rmsnorm", "residual aliases x or out");
  return launch("add_rmsnorm", out, residual, x, w, rows, n, eps, stream);
}

}  // namespace glm::cuda
