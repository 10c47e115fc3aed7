// Dynamic FP8 E4M3 activation quantization (spec §5, §10): per row and group of `group` columns,
//   s = amax / 448,  q = e4m3_rn_satfinite(x / s)   (all-zero group: s = 0, q = 0).
// One block per (row, group), of 32 to 128 threads (about 4 elements per thread): the amax is reduced
// in the block (warp max, then one value per warp), then each thread converts its elements. Division and conversion are correctly rounded on every
// target (cvt.rn.satfinite on sm_89+, the exact software conversion elsewhere and on the harness), so
// the output is bit-identical to the CPU reference.
#include <algorithm>

#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 128;

GLM_DEVICE uint8_t to_e4m3(float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(r) : "f"(0.0f), "f"(v));
  return uint8_t(r & 0xffu);
#else
  return dev::float_to_fp8_e4m3(v);
#endif
}

GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) fp8_act_quant_kernel(uint8_t* xq, float* scales, const float* x, int k,
                                                                 int group, int groups) {
  GLM_SHARED(float, warp_max, kThreads / 32);
  const int row = int(blockIdx.y), g = int(blockIdx.x);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, threads = int(blockDim.x);
  const int begin = g * group, end = min(k, begin + group);
  const float* xr = x + int64_t(row) * k;
  float amax = 0.0f;
  for (int i = begin + tid; i < end; i += threads) amax = fmaxf(amax, fabsf(xr[i]));
  amax = dev::warp_max(amax);
  if (lane == 0) warp_max[warp] = amax;
  __syncthreads();
  amax = warp_max[0];
  for (int w = 1; w < threads / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  const float s = amax / 448.0f;
  if (tid == 0) scales[int64_t(row) * groups + g] = s;
  uint8_t* qr = xq + int64_t(row) * k;
  for (int i = begin + tid; i < end; i += threads) qr[i] = s > 0.0f ? to_e4m3(xr[i] / s) : uint8_t(0);
}

}  // namespace

Status fp8_quantize_activations(Stream stream, uint8_t* xq, float* scales, const float* x, int64_t m, int64_t k,
                                int64_t group) {
  const char* op = "fp8_quantize_activations";
  if (!xq || !scales || !x) return detail::invalid(op, "null pointer");
  if (m < 0 || k <= 0 || group <= 0 || k > 0x7fffffff || m > 65535) return detail::invalid(op, "bad dimensions");
  if (group != k && group != 128) return detail::invalid(op, "group must be k (per token) or 128");
  if (m == 0) return Status::ok();
  const int64_t groups = (k + group - 1) / group;
  const dim3 grid{unsigned(groups), unsigned(m)};
  const int64_t per_group = group < k ? group : k;
  const int threads = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, (per_group / 4 + 31) / 32 * 32)));
  return detail::launched(op, GLM_LAUNCH(fp8_act_quant_kernel, grid, dim3(unsigned(threads)), 0, detail::to_stream(stream.handle), xq,
                                         scales, x, int(k), int(group), int(groups)));
}

}  // namespace glm::cuda
