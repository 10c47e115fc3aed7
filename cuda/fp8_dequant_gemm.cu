// FP8 E4M3 dense GEMM for prefill (m > 4), dequantize-to-bf16 path: y[m, n] (+)= sum_k x[m, k] * W[n, k]
// (+ bias[n]). Each 64x64 weight tile is widened to bf16 in shared memory and multiplied with mma.sync
// m16n8k16 bf16 (fp32 accumulation); x is rounded to bf16 on its way in, as in linear_gemm's BF16 path.
//
// Why not W8A8 (fp8_quantize_activations + fp8_gemm, as vLLM runs these checkpoints): E4M3 keeps 3
// mantissa bits, so quantizing activations costs up to 2^-4 relative per element, against 2^-9 for a
// bf16 rounding; the CPU reference keeps fp32 activations, and the backend's prefill is meant to stay
// within the bf16 budget of the BF16 checkpoints (test/cuda_backend/main.cc). This path costs the same
// weight bytes as W8A8 and runs at bf16 tensor-core rate (half of fp8 mma on sm_89+); the W8A8 kernels
// stay available for a later throughput option.
//
// Weights: e4m3 -> bf16 is exact. PerChannel: the row scale multiplies the fp32 accumulator in the
// epilogue (exactly the CPU's order). Block128: a block's 64 output columns lie in one 128-row scale
// band and a K step of 64 in one 128-column block, so the scale is one number per (block, K step); it
// is folded into the x tile, bf16(x * s) instead of bf16(x): the same single rounding as PerChannel,
// no second accumulator set and no rounding of the weights.
//
// Block: 64x64 outputs, 4 warps in 2x2, each 32x32; K steps of 64, loads for step t+1 issued into
// registers before the mma of step t, stored into the other buffer after it (as mxfp4_gemm.cu).
#include "common.cuh"
#include "launch_util.h"
#include "mma_warp_tile.cuh"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 64;
constexpr int kThreads = 128;
constexpr int kRow = kBK + 8;  // bf16 per shared row (144 bytes: ldmatrix rows in distinct banks)

struct Staged {
  float4 a[8];  // x: 64 rows x 16 float4
  uint4 b[2];   // W: 64 rows x 4 chunks of 16 E4M3
  float s;      // Block128: the scale of this (column block, K step); 1 for PerChannel
};

GLM_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(dev::float_to_bf16(lo)) | uint32_t(dev::float_to_bf16(hi)) << 16;
}

template <bool kBlock>
GLM_DEVICE void load_step(Staged& st, const float* x, const uint8_t* w, const float* scales, int M, int N, int K, int m0,
                          int n0, int k0, int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
    const int row = m0 + r, col = k0 + 4 * c4;
    st.a[i] = row < M && col < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(row) * K + col)) : float4{0, 0, 0, 0};
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 2, c16 = idx & 3, row = n0 + r, col = k0 + 16 * c16;
    st.b[i] = row < N && col < K ? __ldg(reinterpret_cast<const uint4*>(w + int64_t(row) * K + col)) : uint4{0, 0, 0, 0};
  }
  // n0 is a multiple of 64 and k0 of 64: rows n0..n0+63 share scale band n0/128, columns k0..k0+63 block k0/128.
  st.s = kBlock ? __ldg(scales + int64_t(n0 / 128) * ((K + 127) / 128) + k0 / 128) : 1.0f;
}

template <bool kBlock>
GLM_DEVICE void store_step(const Staged& st, uint16_t* as, uint16_t* bs, int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
    float4 a = st.a[i];
    if constexpr (kBlock) a = float4{a.x * st.s, a.y * st.s, a.z * st.s, a.w * st.s};
    const uint2 v{pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w)};
    *reinterpret_cast<uint2*>(as + r * kRow + 4 * c4) = v;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 2, c16 = idx & 3;
    const uint32_t words[4] = {st.b[i].x, st.b[i].y, st.b[i].z, st.b[i].w};
    uint32_t out[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float f[4];
      dev::fp8x4_to_float(words[j], f);
      // An E4M3 value is a bf16, so the RNE below is exact.
      out[2 * j] = pack_bf16x2(f[0], f[1]);
      out[2 * j + 1] = pack_bf16x2(f[2], f[3]);
    }
    uint4* dst = reinterpret_cast<uint4*>(bs + r * kRow + 16 * c16);
    dst[0] = uint4{out[0], out[1], out[2], out[3]};
    dst[1] = uint4{out[4], out[5], out[6], out[7]};
  }
}

// ptxas: hot fp8_dequant_gemm_kernel
template <int kBlockScales>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) fp8_dequant_gemm_kernel(float* y, const float* x, const uint8_t* w, const float* scales,
                                                                   const float* bias, int M, int N, int K, int accumulate) {
  constexpr bool kBlock = kBlockScales != 0;
  GLM_SHARED(uint16_t, as, 2 * kBM * kRow);
  GLM_SHARED(uint16_t, bs, 2 * kBN * kRow);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (K + kBK - 1) / kBK;

  float acc[2][4][4];
  dev::warp_tile_zero(acc);

  Staged st;
  load_step<kBlock>(st, x, w, scales, M, N, K, m0, n0, 0, tid);
  store_step<kBlock>(st, as, bs, tid);
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
    const int buf = t & 1;
    if (t + 1 < steps) load_step<kBlock>(st, x, w, scales, M, N, K, m0, n0, (t + 1) * kBK, tid);
    const uint16_t* a_tile = as + buf * kBM * kRow + (wm * 32) * kRow;
    const uint16_t* b_tile = bs + buf * kBN * kRow + (wn * 32) * kRow;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) dev::warp_tile_kstep<kRow, 16>(acc, a_tile, b_tile, 0, ks * 16, lane);
    if (t + 1 < steps) store_step<kBlock>(st, as + (buf ^ 1) * kBM * kRow, bs + (buf ^ 1) * kBN * kRow, tid);
    __syncthreads();
  }
  dev::warp_tile_store(acc, lane, m0 + wm * 32, n0 + wn * 32, M, N, [&](int r, int col, float v) {
    if (!kBlock) v *= __ldg(scales + col);
    if (bias) v += __ldg(bias + col);
    float* out = y + int64_t(r) * N + col;
    *out = accumulate ? *out + v : v;
  });
}

}  // namespace

Status fp8_dequant_gemm(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate) {
  const char* op = "fp8_dequant_gemm";
  if (Status st = detail::check_fp8_linear(op, y, x, w, m); !st.is_ok()) return st;
  if (m == 0) return Status::ok();
  if (m > int64_t(65535) * kBM) return detail::invalid(op, "too many rows");
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((m + kBM - 1) / kBM));
  const cudaStream_t s = detail::to_stream(stream.handle);
  const cudaError_t e =
      w.scaling == Fp8Scaling::Block128
          ? GLM_LAUNCH(fp8_dequant_gemm_kernel<1>, grid, dim3(kThreads), 0, s, y, x, w.data, w.scales, bias, int(m), int(w.n),
                       int(w.k), accumulate ? 1 : 0)
          : GLM_LAUNCH(fp8_dequant_gemm_kernel<0>, grid, dim3(kThreads), 0, s, y, x, w.data, w.scales, bias, int(m), int(w.n),
                       int(w.k), accumulate ? 1 : 0);
  return detail::launched(op, e);
}

Status fp8_linear(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate) {
  if (m == 0) return detail::check_fp8_linear("fp8_linear", y, x, w, m);
  return m <= kFp8GemvMaxRows ? fp8_gemv(stream, y, x, w, bias, m, accumulate)
                              : fp8_dequant_gemm(stream, y, x, w, bias, m, accumulate);
}

}  // namespace glm::cuda
