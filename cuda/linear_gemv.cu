// Dense GEMV for decode (m <= 4 tokens): y[m, n] (+)= sum_k x[m, k] * W[n, k] (+ bias[n]), W in F32,
// BF16 or F16. Memory-bound: every weight byte is read once, 16 bytes per lane per load, widened in
// registers (exact: bf16/f16 -> fp32 loses nothing), fp32 fused multiply-adds.
//
// Block: 4 warps own 4 output rows together and split K between all 128 threads, so each thread has
// four independent 16-byte loads in flight per step (one per row) and a row of k = 4096 bf16 still takes
// four steps; partial sums are reduced within each warp (shuffles) and then across the 4 warps through
// shared memory. Sharing rows across a block instead of giving each warp its own rows keeps the grid
// large (n / 4 blocks: 1024 for hidden 4096) so every SM has many blocks of loads outstanding.
//
// x is read through the read-only cache (__ldg), not staged in shared memory: m * k fp32 of x is at
// most 4 * 12288 * 4 = 192 KiB (GLM-4.5 q width), beyond what staging could hold for every shape, and
// every block re-reads the same x, so it stays hot in L1/L2; per weight byte it is 2 (bf16) or 1 (f32)
// bytes of cache traffic per token, served from L1.
#include "common.cuh"
#include "gemv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 4;  // output rows per block

// Template code: M (rows of x, 1..4) in bits 0-2, weight type in bits 3-4 (GLM_LAUNCH takes one
// template argument).
constexpr int code(int m, WeightType t) { return m | int(t) << 3; }

template <WeightType T>
GLM_DEVICE void widen(const uint4& q, float (&w)[8]) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (T == WeightType::F32) {
      w[i] = dev::bits_to_float(words[i]);  // 4 elements per 16 bytes; w[4..7] unused
    } else if constexpr (T == WeightType::BF16) {
      w[2 * i] = dev::bits_to_float(words[i] << 16);
      w[2 * i + 1] = dev::bits_to_float(words[i] & 0xffff0000u);
    } else {
      w[2 * i] = dev::f16_to_float(uint16_t(words[i]));
      w[2 * i + 1] = dev::f16_to_float(uint16_t(words[i] >> 16));
    }
  }
}

// ptxas: hot linear_gemv_kernel
template <int kCode>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) linear_gemv_kernel(float* y, const float* x, const void* w, const float* bias,
                                                              int n, int k, int accumulate) {
  constexpr int M = kCode & 7;
  constexpr WeightType T = WeightType(kCode >> 3);
  constexpr int E = T == WeightType::F32 ? 4 : 8;  // elements per 16-byte chunk
  GLM_SHARED(float, red, kWarps * kRows * M);
  const int tid = int(threadIdx.x);
  const int row0 = int(blockIdx.x) * kRows;
  const int chunks = k / E;
  const int64_t row_chunks = chunks;  // a row is k * sizeof(T) bytes = chunks * 16
  const uint4* wq = static_cast<const uint4*>(w);

  float acc[kRows][M];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  }
  for (int c = tid; c < chunks; c += kThreads) {
    uint4 q[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = row0 + r < n ? row0 + r : n - 1;  // a missing last row re-reads a valid one, never stored
      q[r] = __ldg(wq + int64_t(row) * row_chunks + c);
    }
    float xv[M][E];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float4* xp = reinterpret_cast<const float4*>(x + int64_t(m) * k + int64_t(c) * E);
      const float4 lo = __ldg(xp);
      xv[m][0] = lo.x; xv[m][1] = lo.y; xv[m][2] = lo.z; xv[m][3] = lo.w;
      if constexpr (E == 8) {
        const float4 hi = __ldg(xp + 1);
        xv[m][4] = hi.x; xv[m][5] = hi.y; xv[m][6] = hi.z; xv[m][7] = hi.w;
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float wv[8];
      widen<T>(q[r], wv);
#pragma unroll
      for (int m = 0; m < M; ++m) {
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][m] = fmaf(wv[e], xv[m][e], acc[r][m]);
      }
    }
  }
  dev::gemv_rows_reduce<kRows, M, kWarps>(acc, red, tid, row0, n, [&](int row, int m, float v) {
    if (bias) v += bias[row];
    float* out = y + int64_t(m) * n + row;
    *out = accumulate ? *out + v : v;
  });
}

template <int kCode>
cudaError_t launch(float* y, const float* x, const LinearWeight& w, bool accumulate, cudaStream_t s) {
  const dim3 grid(unsigned((w.n + kRows - 1) / kRows));
  return GLM_LAUNCH(linear_gemv_kernel<kCode>, grid, dim3(kThreads), 0, s, y, x, w.data, w.bias, int(w.n), int(w.k),
                    accumulate ? 1 : 0);
}

template <WeightType T>
cudaError_t launch_m(float* y, const float* x, const LinearWeight& w, int64_t m, bool accumulate, cudaStream_t s) {
  switch (m) {
    case 1: return launch<code(1, T)>(y, x, w, accumulate, s);
    case 2: return launch<code(2, T)>(y, x, w, accumulate, s);
    case 3: return launch<code(3, T)>(y, x, w, accumulate, s);
    default: return launch<code(4, T)>(y, x, w, accumulate, s);
  }
}

}  // namespace

namespace detail {
// Shared checks of the dense linear launchers.
Status check_linear(const char* op, float* y, const float* x, const LinearWeight& w, const LinearArgs& args) {
  if (!y || !x || !w.data) return invalid(op, "null pointer");
  if (w.type != WeightType::F32 && w.type != WeightType::BF16 && w.type != WeightType::F16) return invalid(op, "bad weight type");
  const int64_t vec = w.type == WeightType::F32 ? 4 : 8;
  if (w.n <= 0 || w.k <= 0 || w.k % vec != 0) return invalid(op, "k must be a positive multiple of 16 bytes of weights");
  if (args.m < 0) return invalid(op, "negative m");
  if (w.n > 0x7fffffff - 128 || w.k > 0x7fffffff / 4) return invalid(op, "too large");
  if (!aligned(w.data, 16) || !aligned(x, 16)) return invalid(op, "weights and x must be 16-byte aligned");
  return Status::ok();
}
}  // namespace detail

Status linear_gemv(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args) {
  const char* op = "linear_gemv";
  if (Status st = detail::check_linear(op, y, x, w, args); !st.is_ok()) return st;
  if (args.m < 1 || args.m > kLinearGemvMaxRows) return detail::invalid(op, "m must be in [1, 4] (use linear_gemm)");
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t e = cudaSuccess;
  switch (w.type) {
    case WeightType::F32: e = launch_m<WeightType::F32>(y, x, w, args.m, args.accumulate, s); break;
    case WeightType::BF16: e = launch_m<WeightType::BF16>(y, x, w, args.m, args.accumulate, s); break;
    case WeightType::F16: e = launch_m<WeightType::F16>(y, x, w, args.m, args.accumulate, s); break;
  }
  return detail::launched(op, e);
}

Status linear(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args) {
  if (args.m == 0) return detail::check_linear("linear", y, x, w, args);
  return args.m <= kLinearGemvMaxRows ? linear_gemv(stream, y, x, w, args) : linear_gemm(stream, y, x, w, args);
}

}  // namespace glm::cuda
