// MXFP4 GEMV for decode (m <= 4 tokens): y[m, n] = sum_k x[m, k] * W[n, k], W in MXFP4 (spec §10).
// Memory-bound: every weight byte is read once, 16 bytes (one 32-element block) per lane per load,
// and dequantized in registers (never a bf16 copy). Each block of 4 warps owns 8 output rows (2 per
// warp, so every x value read from shared memory serves two rows and two 16-byte loads are in flight
// per lane); lanes stride over the row's K blocks and the warp reduces at the end.
//
// x is staged once per block in shared memory with each 32-float K block padded to 36 floats: lane l
// reads block b0 + l, so unpadded the 8 lanes of a 16-byte access phase would sit 128 bytes apart (one
// bank); 144 bytes apart they cover all 32 banks.
//
// Numerics: E2M1 values and E8M0 scales are exact in fp32; each 32-element block's dot product is
// summed in fp32, multiplied by its scale (a power of two: exact unless it under/overflows) and added
// to the fp32 row sum. A NaN scale (0xFF) makes its output NaN.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr int kXStride = 36;  // floats per staged 32-float K block (16-byte pad)

// ptxas: hot mxfp4_gemv_kernel
template <int M>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) mxfp4_gemv_kernel(float* y, const float* x, const uint8_t* blocks,
                                                             const uint8_t* scales, int n, int nb) {
  GLM_DYNAMIC_SHARED(float, xs);  // [M][nb][kXStride]
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int pieces = nb * 8;  // float4 pieces per row of x
  for (int i = tid; i < M * pieces; i += kThreads) {
    const int m = i / pieces, r = i - m * pieces, b = r >> 3, j = r & 7;
    const float4 v = __ldg(reinterpret_cast<const float4*>(x + int64_t(m) * nb * 32) + r);
    *reinterpret_cast<float4*>(xs + (m * nb + b) * kXStride + 4 * j) = v;
  }
  __syncthreads();

  const int row0 = int(blockIdx.x) * kRowsPerBlock + warp * kRowsPerWarp;
  if (row0 >= n) return;
  float acc[kRowsPerWarp][M];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  }
  for (int b = lane; b < nb; b += 32) {
    uint4 q[kRowsPerWarp];
    float sc[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = row0 + r < n ? row0 + r : row0;  // a missing last row re-reads a valid one, never stored
      q[r] = __ldg(reinterpret_cast<const uint4*>(blocks + (int64_t(row) * nb + b) * 16));
      sc[r] = dev::e8m0_to_float(__ldg(scales + int64_t(row) * nb + b));
    }
    float part[kRowsPerWarp][M];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
      for (int m = 0; m < M; ++m) part[r][m] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // 32-bit word j: elements 8j .. 8j+7
      float xv[M][8];
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float* xb = xs + (m * nb + b) * kXStride + 8 * j;
        const float4 lo = *reinterpret_cast<const float4*>(xb), hi = *reinterpret_cast<const float4*>(xb + 4);
        xv[m][0] = lo.x; xv[m][1] = lo.y; xv[m][2] = lo.z; xv[m][3] = lo.w;
        xv[m][4] = hi.x; xv[m][5] = hi.y; xv[m][6] = hi.z; xv[m][7] = hi.w;
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const uint32_t w = j == 0 ? q[r].x : j == 1 ? q[r].y : j == 2 ? q[r].z : q[r].w;
        uint32_t v[4];
        dev::mxfp4_word_to_bf16x2(w, v);
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          const float w0 = dev::bf16x2_lo(v[p]), w1 = dev::bf16x2_hi(v[p]);
#pragma unroll
          for (int m = 0; m < M; ++m) part[r][m] = fmaf(w1, xv[m][2 * p + 1], fmaf(w0, xv[m][2 * p], part[r][m]));
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
      for (int m = 0; m < M; ++m) acc[r][m] = fmaf(part[r][m], sc[r], acc[r][m]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float s = dev::warp_sum(acc[r][m]);
      if (lane == 0 && row0 + r < n) y[int64_t(m) * n + row0 + r] = s;
    }
  }
}

template <int M>
cudaError_t launch_gemv(float* y, const float* x, const Mxfp4Weight& w, cudaStream_t s) {
  const int nb = int(w.k / 32);
  const size_t smem = size_t(M) * size_t(nb) * kXStride * sizeof(float);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(mxfp4_gemv_kernel<M>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(unsigned((w.n + kRowsPerBlock - 1) / kRowsPerBlock));
  return GLM_LAUNCH(mxfp4_gemv_kernel<M>, grid, dim3(kThreads), smem, s, y, x, w.blocks, w.scales, int(w.n), nb);
}

}  // namespace

Status mxfp4_gemv(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m) {
  const char* op = "mxfp4_gemv";
  if (!y || !x || !w.blocks || !w.scales) return detail::invalid(op, "null pointer");
  if (w.n <= 0 || w.k <= 0 || w.k % 32 != 0) return detail::invalid(op, "k must be a positive multiple of 32");
  if (m < 1 || m > kMxfp4GemvMaxRows) return detail::invalid(op, "m must be in [1, 4] (use mxfp4_gemm)");
  if (w.n > 0x7fffffff / 2 || w.k / 32 > 0x7fffffff / 8) return detail::invalid(op, "too large");
  // Shared x: m * k * 4.5 bytes must fit the opt-in limit (227 KiB on sm_90, 163 KiB on sm_80).
  if (m * (w.k / 32) * kXStride * 4 > 160 * 1024) return detail::invalid(op, "m * k too large for the staged x");
  if (!detail::aligned(w.blocks, 16) || !detail::aligned(x, 16)) return detail::invalid(op, "blocks and x must be 16-byte aligned");
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t e = cudaSuccess;
  switch (m) {
    case 1: e = launch_gemv<1>(y, x, w, s); break;
    case 2: e = launch_gemv<2>(y, x, w, s); break;
    case 3: e = launch_gemv<3>(y, x, w, s); break;
    default: e = launch_gemv<4>(y, x, w, s); break;
  }
  return detail::launched(op, e);
}

Status mxfp4_matmul(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m) {
  return m <= kMxfp4GemvMaxRows ? mxfp4_gemv(stream, y, x, w, m) : mxfp4_gemm(stream, y, x, w, m);
}

}  // namespace glm::cuda
