// FP8 E4M3 GEMM, portable path (mma.sync; the Hopper wgmma twin is fp8_gemm_sm90.cu):
//   PerChannel: y[m, n] = (sum_k q_x[m, k] q_w[n, k]) * s_x[m] * s_w[n]          (epilogue scaling)
//   Block128:   y[m, n] = sum_kb (sum_{k in kb} q_x q_w) * s_x[m, kb] * s_w[n/128, kb]
//               (each 128-wide K block accumulated on its own, then promoted into the fp32 sum with
//               its scales, as DeepSeek's fp8_gemm / DeepGEMM do).
// Block: 64x64 outputs, 4 warps in 2x2 (each 32x32 = 2 m16 x 4 n8 tiles), K steps of 128 bytes (one
// scale block), double-buffered with cp.async (rows and K pieces past the matrix zero-filled: K edge
// blocks are zero-padded, as the format defines them). Rows of 144 bytes keep ldmatrix conflict-free.
// Fragments come from ldmatrix on 8x16-byte tiles, which is the m16n8k32 e4m3 layout (common.cuh).
//
// Numerics: e4m3 products are exact in fp32; on the harness and on sm_80 (bf16 mma) the sums are plain
// fp32. Hopper's fp8 tensor cores are documented to accumulate with reduced precision inside an mma
// chain (DeepSeek-V3 report: ~14 bits); per-channel mode accumulates all of K in the mma chain, block
// mode only 128 — the GPU check measures both against the float64 reference.
#include "common.cuh"
#include "launch_util.h"
#include "mma_warp_tile.cuh"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 128;
constexpr int kThreads = 128;
constexpr int kRowBytes = kBK + 16;
constexpr int kTileBytes = kBM * kRowBytes;
static_assert(kBM == kBN, "one tile size for A and B keeps the loader shared");

GLM_DEVICE void issue_tile(uint8_t* dst, const uint8_t* src, int rows, int k, int r0, int k0, int tid) {
  // 64 rows x 8 pieces of 16 bytes = 512 pieces, 4 per thread.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 3, p = idx & 7;
    const int row = r0 + r, col = k0 + 16 * p;
    const bool ok = row < rows && col < k;
    dev::cp_async_16(dst + r * kRowBytes + 16 * p, ok ? src + int64_t(row) * k + col : src, ok ? 16 : 0);
  }
}

// ptxas: hot fp8_gemm_kernel
template <bool kBlockScaled>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) fp8_gemm_kernel(float* y, const uint8_t* xq, const float* x_scales,
                                                           const uint8_t* wq, const float* w_scales, int M, int N, int K) {
  GLM_SHARED(uint8_t, as, 2 * kTileBytes);
  GLM_SHARED(uint8_t, bs, 2 * kTileBytes);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (K + kBK - 1) / kBK;
  const int kblocks = steps;  // Block128: scale columns = ceil(K / 128)
  const int g = lane >> 2, tig = lane & 3;

  float acc[2][4][4];
  dev::warp_tile_zero(acc);

  issue_tile(as, xq, M, K, m0, 0, tid);
  issue_tile(bs, wq, N, K, n0, 0, tid);
  dev::cp_async_commit();
  for (int t = 0; t < steps; ++t) {
    const int buf = t & 1;
    if (t + 1 < steps) {
      issue_tile(as + (buf ^ 1) * kTileBytes, xq, M, K, m0, (t + 1) * kBK, tid);
      issue_tile(bs + (buf ^ 1) * kTileBytes, wq, N, K, n0, (t + 1) * kBK, tid);
    }
    dev::cp_async_commit();
    dev::cp_async_wait<1>();
    __syncthreads();
    const uint8_t* a_tile = as + buf * kTileBytes + (wm * 32) * kRowBytes;
    const uint8_t* b_tile = bs + buf * kTileBytes + (wn * 32) * kRowBytes;
    float part[2][4][4];
    float (&sum)[2][4][4] = kBlockScaled ? part : acc;
    if (kBlockScaled) dev::warp_tile_zero(part);
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) dev::warp_tile_kstep<kRowBytes, 16>(sum, a_tile, b_tile, 0, ks * 32, lane);
    if (kBlockScaled) {
      // Promotion: this K block's partial times s_x[row, t] * s_w[n-block, t] into the fp32 sum. The
      // 64-wide n tile lies inside one 128-row weight scale block.
      const float sw = __ldg(w_scales + int64_t(n0 / 128) * kblocks + t);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = m0 + wm * 32 + i * 16 + g + 8 * h;
          const float s = (row < M ? __ldg(x_scales + int64_t(row) * kblocks + t) : 0.0f) * sw;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            acc[i][j][2 * h] = fmaf(part[i][j][2 * h], s, acc[i][j][2 * h]);
            acc[i][j][2 * h + 1] = fmaf(part[i][j][2 * h + 1], s, acc[i][j][2 * h + 1]);
          }
        }
      }
    }
    __syncthreads();  // the next step's copies overwrite the buffer just read
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm * 32 + i * 16 + g + 8 * h;
      if (row >= M) continue;
      const float sx = kBlockScaled ? 1.0f : __ldg(x_scales + row);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = n0 + wn * 32 + j * 8 + 2 * tig + c;
          if (col >= N) continue;
          const float v = acc[i][j][2 * h + c];
          y[int64_t(row) * N + col] = kBlockScaled ? v : v * sx * __ldg(w_scales + col);
        }
      }
    }
  }
}

}  // namespace

namespace detail {
Status check_fp8_gemm(const char* op, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m) {
  if (!y || !xq || !x_scales || !w.data || !w.scales) return invalid(op, "null pointer");
  if (w.n <= 0 || w.k <= 0 || w.k % 16 != 0) return invalid(op, "k must be a positive multiple of 16");
  if (m < 0 || m > int64_t(65535) * 64 || w.n > 0x7fffffff - 128 || w.k > 0x7fffffff - 256) return invalid(op, "bad dimensions");
  if (!aligned(w.data, 16) || !aligned(xq, 16)) return invalid(op, "weights and activations must be 16-byte aligned");
  return Status::ok();
}
}  // namespace detail

Status fp8_gemm(Stream stream, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m) {
  const char* op = "fp8_gemm";
  Status st = detail::check_fp8_gemm(op, y, xq, x_scales, w, m);
  if (!st.is_ok() || m == 0) return st;
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((m + kBM - 1) / kBM));
  const cudaStream_t s = detail::to_stream(stream.handle);
  const cudaError_t e =
      w.scaling == Fp8Scaling::Block128
          ? GLM_LAUNCH(fp8_gemm_kernel<true>, grid, dim3(kThreads), 0, s, y, xq, x_scales, w.data, w.scales, int(m), int(w.n), int(w.k))
          : GLM_LAUNCH(fp8_gemm_kernel<false>, grid, dim3(kThreads), 0, s, y, xq, x_scales, w.data, w.scales, int(m), int(w.n), int(w.k));
  return detail::launched(op, e);
}

}  // namespace glm::cuda
