// Dense GEMM (prefill): y[m, n] (+)= sum_k x[m, k] * W[n, k] (+ bias[n]).
//
// BF16 weights: tensor cores, mma.sync m16n8k16 bf16 with fp32 accumulation. x is rounded to bf16 (RNE)
// on its way into shared memory, the one rounding of this path: each product term carries a relative
// error <= 2^-9, so |y - y_exact| <= 2^-9 * sum_k |x_k w_k| plus fp32 summation. That is the precision
// the checkpoint's own bf16 forward pass runs at (HF computes these projections in bf16), and it buys
// the bf16 tensor-core rate — tf32 would halve it and double the shared-memory tile of x.
// Block: 64x64 outputs, 4 warps in 2x2, each 32x32 (2 m16 x 4 n8 tiles), K steps of 64. The global
// loads of step t+1 (x: 8 float4 per thread, W: 4 x 16 bytes per thread) are issued into registers
// before the mma of step t and stored into the other shared buffer after it: one barrier per step.
// Rows of 72 bf16 (144 bytes): the 8 rows of an ldmatrix phase fall in distinct banks.
//
// F32 and F16 weights, and callers that ask for fp32 activations (the router): a CUDA-core tiled kernel
// in plain fp32 (weights widened exactly, x unrounded), 64x64 outputs, 256 threads with 4x4 each, K
// steps of 16. A cold path — GLM checkpoints store projections in bf16 — so it stays simple.
#include "common.cuh"
#include "launch_util.h"
#include "mma_warp_tile.cuh"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 64;
constexpr int kThreads = 128;
constexpr int kRow = kBK + 8;  // bf16 per shared row

struct Staged {
  float4 a[8];
  uint4 b[4];
};

GLM_DEVICE void load_step(Staged& st, const float* x, const uint16_t* w, int M, int N, int K, int m0, int n0, int k0,
                          int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {  // x: 64 rows x 16 float4
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
    const int row = m0 + r, col = k0 + 4 * c4;
    st.a[i] = row < M && col < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(row) * K + col)) : float4{0, 0, 0, 0};
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // W: 64 rows x 8 chunks of 8 bf16 (K is a multiple of 8: a chunk is all in or all out)
    const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7;
    const int row = n0 + r, col = k0 + 8 * c8;
    st.b[i] = row < N && col < K ? __ldg(reinterpret_cast<const uint4*>(w + int64_t(row) * K + col)) : uint4{0, 0, 0, 0};
  }
}

GLM_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(dev::float_to_bf16(lo)) | uint32_t(dev::float_to_bf16(hi)) << 16;
}

GLM_DEVICE void store_step(const Staged& st, uint16_t* as, uint16_t* bs, int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
    const uint2 v{pack_bf16x2(st.a[i].x, st.a[i].y), pack_bf16x2(st.a[i].z, st.a[i].w)};
    *reinterpret_cast<uint2*>(as + r * kRow + 4 * c4) = v;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7;
    *reinterpret_cast<uint4*>(bs + r * kRow + 8 * c8) = st.b[i];
  }
}

// ptxas: hot linear_gemm_bf16_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) linear_gemm_bf16_kernel(float* y, const float* x, const uint16_t* w,
                                                                   const float* bias, int M, int N, int K, int accumulate) {
  GLM_SHARED(uint16_t, as, 2 * kBM * kRow);
  GLM_SHARED(uint16_t, bs, 2 * kBN * kRow);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (K + kBK - 1) / kBK;

  float acc[2][4][4];
  dev::warp_tile_zero(acc);

  Staged st;
  load_step(st, x, w, M, N, K, m0, n0, 0, tid);
  store_step(st, as, bs, tid);
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
    const int buf = t & 1;
    if (t + 1 < steps) load_step(st, x, w, M, N, K, m0, n0, (t + 1) * kBK, tid);
    const uint16_t* a_tile = as + buf * kBM * kRow + (wm * 32) * kRow;
    const uint16_t* b_tile = bs + buf * kBN * kRow + (wn * 32) * kRow;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) dev::warp_tile_kstep<kRow, 16>(acc, a_tile, b_tile, 0, ks * 16, lane);
    if (t + 1 < steps) store_step(st, as + (buf ^ 1) * kBM * kRow, bs + (buf ^ 1) * kBN * kRow, tid);
    __syncthreads();
  }
  dev::warp_tile_store(acc, lane, m0 + wm * 32, n0 + wn * 32, M, N, [&](int r, int col, float v) {
    if (bias) v += bias[col];
    float* out = y + int64_t(r) * N + col;
    *out = accumulate ? *out + v : v;
  });
}

// ---- fp32 CUDA-core path ------------------------------------------------------------------------
constexpr int kFThreads = 256;
constexpr int kFBK = 16;
constexpr int kFStride = kBM + 4;  // floats per shared k-row: float4-aligned, 4-way store conflicts at worst

template <int kType>  // int(WeightType)
GLM_DEVICE float load_weight(const void* w, int64_t i) {
  if constexpr (kType == int(WeightType::F32)) return __ldg(static_cast<const float*>(w) + i);
  else if constexpr (kType == int(WeightType::BF16)) return dev::bf16_to_float(__ldg(static_cast<const uint16_t*>(w) + i));
  else return dev::f16_to_float(__ldg(static_cast<const uint16_t*>(w) + i));
}

// ptxas: hot linear_gemm_f32_kernel
template <int kType>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kFThreads) linear_gemm_f32_kernel(float* y, const float* x, const void* w,
                                                                   const float* bias, int M, int N, int K, int accumulate) {
  GLM_SHARED(float, as, kFBK * kFStride);  // [k][m]
  GLM_SHARED(float, bs, kFBK * kFStride);  // [k][n]
  const int tid = int(threadIdx.x), ty = tid >> 4, tx = tid & 15;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kFBK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // 64 rows x 16 k of each operand; 16 consecutive k per row: coalesced
      const int idx = tid + kFThreads * i, r = idx >> 4, kk = idx & 15, col = k0 + kk;
      as[kk * kFStride + r] = m0 + r < M && col < K ? __ldg(x + int64_t(m0 + r) * K + col) : 0.0f;
      bs[kk * kFStride + r] = n0 + r < N && col < K ? load_weight<kType>(w, int64_t(n0 + r) * K + col) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kFBK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(as + kk * kFStride + 4 * ty);
      const float4 b = *reinterpret_cast<const float4*>(bs + kk * kFStride + 4 * tx);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = m0 + 4 * ty + i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = n0 + 4 * tx + j;
      if (r < M && col < N) {
        float v = acc[i][j];
        if (bias) v += bias[col];
        float* out = y + int64_t(r) * N + col;
        *out = accumulate ? *out + v : v;
      }
    }
  }
}

}  // namespace

Status linear_gemm(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args) {
  const char* op = "linear_gemm";
  if (Status st = detail::check_linear(op, y, x, w, args); !st.is_ok()) return st;
  if (args.m == 0) return Status::ok();
  if (args.m > int64_t(65535) * kBM) return detail::invalid(op, "m too large");
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((args.m + kBM - 1) / kBM));
  const cudaStream_t s = detail::to_stream(stream.handle);
  const int M = int(args.m), N = int(w.n), K = int(w.k), acc = args.accumulate ? 1 : 0;
  cudaError_t e = cudaSuccess;
  if (w.type == WeightType::BF16 && !args.fp32_activations) {
    e = GLM_LAUNCH(linear_gemm_bf16_kernel, grid, dim3(kThreads), 0, s, y, x, static_cast<const uint16_t*>(w.data), w.bias,
                   M, N, K, acc);
  } else if (w.type == WeightType::BF16) {
    // bf16 weights, fp32 x kept exact (the router).
    e = GLM_LAUNCH(linear_gemm_f32_kernel<int(WeightType::BF16)>, grid, dim3(kFThreads), 0, s, y, x, w.data, w.bias, M, N, K, acc);
  } else if (w.type == WeightType::F16) {
    e = GLM_LAUNCH(linear_gemm_f32_kernel<int(WeightType::F16)>, grid, dim3(kFThreads), 0, s, y, x, w.data, w.bias, M, N, K, acc);
  } else {
    e = GLM_LAUNCH(linear_gemm_f32_kernel<int(WeightType::F32)>, grid, dim3(kFThreads), 0, s, y, x, w.data, w.bias, M, N, K, acc);
  }
  return detail::launched(op, e);
}

}  // namespace glm::cuda
