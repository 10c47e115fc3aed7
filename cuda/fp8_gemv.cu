// FP8 E4M3 dense GEMV for decode (m <= 4 tokens), weight-only: y[m, n] (+)= sum_k x[m, k] * W[n, k]
// (+ bias[n]) with x in fp32 and W = e4m3 * scale, per output row (PerChannel) or per 128x128 block
// (Block128). Memory-bound like linear_gemv (same block shape: 4 warps share 4 output rows and split K
// over all 128 threads; 16-byte weight loads = 16 E4M3 elements per lane per row), at half the bytes of
// BF16 per weight.
//
// Numerics follow the CPU backend's matmul (cpp/cpu/kernels.h) rounding for rounding in each weight:
// PerChannel sums e4m3(w) * x in fp32 and multiplies by the row scale once at the end; Block128 forms
// each weight as the fp32 product e4m3(w) * s (one rounding, as the CPU's block kernel does) before the
// fused multiply-add. Only the fp32 summation order differs from the CPU. The E4M3 NaN codes read as
// +-480 (fp8x4_to_float); real checkpoints have none.
#include "common.cuh"
#include "gemv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 4;  // output rows per block

// Template code: M (1..4) in bits 0-2, Block128 in bit 3 (GLM_LAUNCH takes one template argument).
constexpr int code(int m, bool block) { return m | (block ? 8 : 0); }

// ptxas: hot fp8_gemv_kernel
template <int kCode>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) fp8_gemv_kernel(float* y, const float* x, const uint8_t* w, const float* scales,
                                                           const float* bias, int n, int k, int accumulate) {
  constexpr int M = kCode & 7;
  constexpr bool kBlock = (kCode & 8) != 0;
  GLM_SHARED(float, red, kWarps * kRows * M);
  const int tid = int(threadIdx.x);
  const int row0 = int(blockIdx.x) * kRows;
  const int chunks = k / 16;  // 16 bytes = 16 elements
  const int kb = (k + 127) / 128;
  const uint4* wq = reinterpret_cast<const uint4*>(w);

  float acc[kRows][M];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  }
  for (int c = tid; c < chunks; c += kThreads) {
    uint4 q[kRows];
    float s[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = row0 + r < n ? row0 + r : n - 1;  // a missing last row re-reads a valid one, never stored
      q[r] = __ldg(wq + int64_t(row) * chunks + c);
      // A 16-element chunk never straddles a 128-column block (128 is a multiple of 16).
      s[r] = kBlock ? __ldg(scales + int64_t(row / 128) * kb + (c >> 3)) : 1.0f;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // one 32-bit word = 4 elements at a time keeps the live registers low
      float4 xv[M];
#pragma unroll
      for (int m = 0; m < M; ++m) xv[m] = __ldg(reinterpret_cast<const float4*>(x + int64_t(m) * k + int64_t(c) * 16 + 4 * j));
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const uint32_t word = j == 0 ? q[r].x : j == 1 ? q[r].y : j == 2 ? q[r].z : q[r].w;
        float wv[4];
        dev::fp8x4_to_float(word, wv);
        if constexpr (kBlock) {
#pragma unroll
          for (int e = 0; e < 4; ++e) wv[e] *= s[r];
        }
#pragma unroll
        for (int m = 0; m < M; ++m) {
          acc[r][m] = fmaf(wv[0], xv[m].x, acc[r][m]);
          acc[r][m] = fmaf(wv[1], xv[m].y, acc[r][m]);
          acc[r][m] = fmaf(wv[2], xv[m].z, acc[r][m]);
          acc[r][m] = fmaf(wv[3], xv[m].w, acc[r][m]);
        }
      }
    }
  }
  dev::gemv_rows_reduce<kRows, M, kWarps>(acc, red, tid, row0, n, [&](int row, int m, float v) {
    if (!kBlock) v *= scales[row];
    if (bias) v += bias[row];
    float* out = y + int64_t(m) * n + row;
    *out = accumulate ? *out + v : v;
  });
}

template <int kCode>
cudaError_t launch(float* y, const float* x, const Fp8Weight& w, const float* bias, bool accumulate, cudaStream_t s) {
  const dim3 grid(unsigned((w.n + kRows - 1) / kRows));
  return GLM_LAUNCH(fp8_gemv_kernel<kCode>, grid, dim3(kThreads), 0, s, y, x, w.data, w.scales, bias, int(w.n), int(w.k),
                    accumulate ? 1 : 0);
}

template <bool kBlock>
cudaError_t launch_m(float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate, cudaStream_t s) {
  switch (m) {
    case 1: return launch<code(1, kBlock)>(y, x, w, bias, accumulate, s);
    case 2: return launch<code(2, kBlock)>(y, x, w, bias, accumulate, s);
    case 3: return launch<code(3, kBlock)>(y, x, w, bias, accumulate, s);
    default: return launch<code(4, kBlock)>(y, x, w, bias, accumulate, s);
  }
}

}  // namespace

namespace detail {
Status check_fp8_linear(const char* op, float* y, const float* x, const Fp8Weight& w, int64_t m) {
  if (!y || !x || !w.data || !w.scales) return invalid(op, "null pointer");
  if (w.scaling != Fp8Scaling::PerChannel && w.scaling != Fp8Scaling::Block128) return invalid(op, "bad scaling");
  if (w.n <= 0 || w.k <= 0 || w.k % 16 != 0) return invalid(op, "k must be a positive multiple of 16");
  if (m < 0) return invalid(op, "negative m");
  if (w.n > 0x7fffffff - 128 || w.k > 0x7fffffff / 4) return invalid(op, "too large");
  if (!aligned(w.data, 16) || !aligned(x, 16)) return invalid(op, "weights and x must be 16-byte aligned");
  return Status::ok();
}
}  // namespace detail

Status fp8_gemv(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate) {
  const char* op = "fp8_gemv";
  if (Status st = detail::check_fp8_linear(op, y, x, w, m); !st.is_ok()) return st;
  if (m < 1 || m > kFp8GemvMaxRows) return detail::invalid(op, "m must be in [1, 4] (use fp8_dequant_gemm)");
  const cudaStream_t s = detail::to_stream(stream.handle);
  const cudaError_t e = w.scaling == Fp8Scaling::Block128 ? launch_m<true>(y, x, w, bias, m, accumulate, s)
                                                         : launch_m<false>(y, x, w, bias, m, accumulate, s);
  return detail::launched(op, e);
}

}  // namespace glm::cuda
