// One warp's 32x32 output tile on mma.sync: 2 m16 x 4 n8 tiles, 4 fp32 accumulators each
// (acc[i][j][c]). The portable tensor-core GEMMs (linear_gemm, fp8_dequant_gemm, mxfp4_gemm,
// moe_experts_bf16's grouped kernel, fp8_gemm) all compute this tile from padded, K-contiguous shared
// tiles of A (rows = M) and B (rows = N); they differ in how the tiles are filled and in the epilogue,
// not in these three pieces, which live here once so a fix to the fragment mapping reaches every kernel.
//
// Why force-inlined functions and no loop-carried state: the accumulators must stay in registers, so
// every index below has to be a compile-time constant after unrolling; GLM_DEVICE is __forceinline__
// under nvcc (the harness compiles it as plain inline C++). The call sites keep the exact operation
// order of the code they replace: same ldmatrix addresses, same mma order, same fp32 sums.
#pragma once
#include "common.cuh"

namespace glm::dev {

// acc = 0 for the whole warp tile.
GLM_DEVICE void warp_tile_zero(float (&acc)[2][4][4]) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;
}

// One K step of 32 bytes on the warp tile: ldmatrix x4 fragment loads, then the 2x4 mma.
// T picks the instruction: uint16_t = bf16 (mma m16n8k16), uint8_t = e4m3 (mma m16n8k32); either way a
// step is 32 bytes of K and an ldmatrix 8x8 b16 matrix is 8 rows x 16 bytes, so the addressing is one.
//   kRow:   elements per shared row (both tiles); a: the warp's first A row (32 rows follow);
//   b, b_row, kBStep: the warp's two 16-row B groups (its n 0-15 and n 16-31) start at rows b_row and
//           b_row + kBStep of b (16 for a contiguous 32-row slice; moe's gate+up tile interleaves: 32);
//   k:      the step's first K element within the shared row.
// A: matrices (rows 0-7 | 8-15) x (k half 0 | 1) -> the m16k16 (bf16) / m16k32 (e4m3) A fragment.
// B: per 16-row group, matrices (n 0-7: k half 0, 1), (n 8-15: k half 0, 1) -> two n8 B fragments.
// kRow and kBStep are template arguments so the per-step offsets fold into immediates, as they did in
// the kernels' own copies (a runtime group offset cost moe_grouped_kernel up to 39 registers).
template <int kRow, int kBStep, typename T>
GLM_DEVICE void warp_tile_kstep(float (&acc)[2][4][4], const T* a, const T* b, int b_row, int k, int lane) {
  static_assert(sizeof(T) == 1 || sizeof(T) == 2, "uint8_t (e4m3) or uint16_t (bf16) tiles");
  constexpr int kHalf = 16 / int(sizeof(T));  // elements in 16 bytes: one ldmatrix row
  const int lm = lane >> 3, lr = lane & 7;
  uint32_t af[2][4], bfr[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i) ldmatrix<4, false>(af[i], a + (i * 16 + 8 * (lm & 1) + lr) * kRow + k + kHalf * (lm >> 1));
#pragma unroll
  for (int jj = 0; jj < 2; ++jj)
    ldmatrix<4, false>(bfr[jj], b + (jj * kBStep + b_row + 8 * (lm >> 1) + lr) * kRow + k + kHalf * (lm & 1));
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t b2[2] = {bfr[j >> 1][2 * (j & 1)], bfr[j >> 1][2 * (j & 1) + 1]};
      if constexpr (sizeof(T) == 2) mma_m16n8k16_bf16(acc[i][j], af[i], b2);
      else mma_m16n8k32_e4m3(acc[i][j], af[i], b2);
    }
  }
}

// Where accumulator acc[i][j][c] of this lane sits in the warp's 32x32 tile (the m16n8 D fragment:
// c = 0, 1 on row g, c = 2, 3 on row g + 8, columns 2 * (lane % 4) + c % 2).
GLM_DEVICE int warp_tile_row(int lane, int i, int c) { return i * 16 + (lane >> 2) + 8 * (c >> 1); }
GLM_DEVICE int warp_tile_col(int lane, int j, int c) { return j * 8 + 2 * (lane & 3) + (c & 1); }

// The plain epilogue: f(r, col, acc[i][j][c]) for every accumulator of the warp tile whose global
// position (r0 + row in tile, c0 + column in tile) lies inside M x N, in (i, j, c) order. f is a
// lambda of the kernel (inlined like the rest); epilogues that pair tiles (moe's gate/up) or hoist
// per-row work (fp8_gemm's scales) keep their own loops over warp_tile_row / warp_tile_col.
template <typename F>
GLM_DEVICE void warp_tile_store(const float (&acc)[2][4][4], int lane, int r0, int c0, int M, int N, F&& f) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = r0 + warp_tile_row(lane, i, c);
        const int col = c0 + warp_tile_col(lane, j, c);
        if (r < M && col < N) f(r, col, acc[i][j][c]);
      }
    }
  }
}

}  // namespace glm::dev
