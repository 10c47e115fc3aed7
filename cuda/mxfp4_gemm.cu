// MXFP4 GEMM (prefill): y[m, n] = sum_k x[m, k] * W[n, k], W in MXFP4 (spec §10). Hopper has no FP4
// tensor cores, so each 64x64 weight tile is dequantized to bf16 in shared memory (exact: an E2M1
// value times a power-of-two scale is a bf16) and multiplied with mma.sync m16n8k16 bf16, fp32
// accumulation. x is rounded to bf16 on its way into shared memory (the one rounding of this path).
//
// Block: 64x64 outputs, 4 warps in 2x2, each 32x32 (2 m16 x 4 n8 tiles); K steps of 64 (two MX
// blocks). Global loads for step t+1 are issued into registers before the mma of step t (fp32 x: 8
// float4 per thread; weights: one 16-byte block + its scale per thread), converted and stored into
// the other shared buffer after it: one barrier per step. Rows of 72 bf16 (144 bytes): ldmatrix rows
// of a tile fall in distinct banks.
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
  uint4 b;
  uint8_t scale;
};

GLM_DEVICE void load_step(Staged& st, const float* x, const uint8_t* blocks, const uint8_t* scales, int M, int N,
                          int nb, int m0, int n0, int kstep, int tid) {
  const int K = nb * 32, k0 = kstep * kBK;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
    const int row = m0 + r, col = k0 + 4 * c4;
    st.a[i] = row < M && col < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(row) * K + col)) : float4{0, 0, 0, 0};
  }
  const int r = tid >> 1, blk = kstep * 2 + (tid & 1), row = n0 + r;
  if (row < N && blk < nb) {
    st.b = __ldg(reinterpret_cast<const uint4*>(blocks + (int64_t(row) * nb + blk) * 16));
    st.scale = __ldg(scales + int64_t(row) * nb + blk);
  } else {
    st.b = uint4{0, 0, 0, 0};
    st.scale = 127;  // 1.0 times zero codes
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
  const float s = dev::e8m0_to_float(st.scale);
  const uint32_t words[4] = {st.b.x, st.b.y, st.b.z, st.b.w};
  uint16_t* dst = bs + (tid >> 1) * kRow + 32 * (tid & 1);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    uint32_t v[4];
    dev::mxfp4_word_to_bf16x2(words[j], v);
    uint4 o;
    // code * 2^e is exact in fp32 and in bf16, so the bf16 is the fp32's top half (NaN scale: 0x7FC0).
    const float f0 = dev::bf16x2_lo(v[0]) * s, f1 = dev::bf16x2_hi(v[0]) * s;
    const float f2 = dev::bf16x2_lo(v[1]) * s, f3 = dev::bf16x2_hi(v[1]) * s;
    const float f4 = dev::bf16x2_lo(v[2]) * s, f5 = dev::bf16x2_hi(v[2]) * s;
    const float f6 = dev::bf16x2_lo(v[3]) * s, f7 = dev::bf16x2_hi(v[3]) * s;
    o.x = dev::byte_perm(dev::float_to_bits(f0), dev::float_to_bits(f1), 0x7632u);
    o.y = dev::byte_perm(dev::float_to_bits(f2), dev::float_to_bits(f3), 0x7632u);
    o.z = dev::byte_perm(dev::float_to_bits(f4), dev::float_to_bits(f5), 0x7632u);
    o.w = dev::byte_perm(dev::float_to_bits(f6), dev::float_to_bits(f7), 0x7632u);
    *reinterpret_cast<uint4*>(dst + 8 * j) = o;
  }
}

// ptxas: hot mxfp4_gemm_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) mxfp4_gemm_kernel(float* y, const float* x, const uint8_t* blocks,
                                                             const uint8_t* scales, int M, int N, int nb) {
  GLM_SHARED(uint16_t, as, 2 * kBM * kRow);
  GLM_SHARED(uint16_t, bs, 2 * kBN * kRow);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (nb * 32 + kBK - 1) / kBK;

  float acc[2][4][4];
  dev::warp_tile_zero(acc);

  Staged st;
  load_step(st, x, blocks, scales, M, N, nb, m0, n0, 0, tid);
  store_step(st, as, bs, tid);
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
    const int buf = t & 1;
    if (t + 1 < steps) load_step(st, x, blocks, scales, M, N, nb, m0, n0, t + 1, tid);
    const uint16_t* a_tile = as + buf * kBM * kRow + (wm * 32) * kRow;
    const uint16_t* b_tile = bs + buf * kBN * kRow + (wn * 32) * kRow;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) dev::warp_tile_kstep<kRow, 16>(acc, a_tile, b_tile, 0, ks * 16, lane);
    if (t + 1 < steps) store_step(st, as + (buf ^ 1) * kBM * kRow, bs + (buf ^ 1) * kBN * kRow, tid);
    __syncthreads();
  }
  dev::warp_tile_store(acc, lane, m0 + wm * 32, n0 + wn * 32, M, N, [&](int r, int col, float v) { y[int64_t(r) * N + col] = v; });
}

}  // namespace

Status mxfp4_gemm(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m) {
  const char* op = "mxfp4_gemm";
  if (!y || !x || !w.blocks || !w.scales) return detail::invalid(op, "null pointer");
  if (w.n <= 0 || w.k <= 0 || w.k % 32 != 0) return detail::invalid(op, "k must be a positive multiple of 32");
  if (m < 0) return detail::invalid(op, "negative m");
  if (m == 0) return Status::ok();
  if (w.n > 0x7fffffff - kBN || m > int64_t(65535) * kBM || w.k > 0x7fffffff / 2) return detail::invalid(op, "too large");
  if (!detail::aligned(w.blocks, 16) || !detail::aligned(x, 16)) return detail::invalid(op, "blocks and x must be 16-byte aligned");
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((m + kBM - 1) / kBM));
  return detail::launched(op, GLM_LAUNCH(mxfp4_gemm_kernel, grid, dim3(kThreads), 0, detail::to_stream(stream.handle), y, x,
                                         w.blocks, w.scales, int(m), int(w.n), int(w.k / 32)));
}

}  // namespace glm::cuda
