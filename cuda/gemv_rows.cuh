// The end of the decode GEMVs that give a block kRows weight rows and split K over its warps
// (linear_gemv, fp8_gemv): each warp holds partial sums acc[r][m] (weight row row0 + r, activation
// row m); they are summed across the warp, then across the warps through shared memory `red`
// [kWarps * kRows * M], in warp order, and thread tid < kRows * M hands its (row, m) total to `store`.
// One copy so both kernels keep the same fixed summation order (and the same barrier placement).
#pragma once
#include "common.cuh"

namespace glm::dev {

template <int kRows, int M, int kWarps, class F>
GLM_DEVICE void gemv_rows_reduce(const float (&acc)[kRows][M], float* red, int tid, int row0, int n, F&& store) {
  const int lane = tid & 31, warp = tid >> 5;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float s = warp_sum(acc[r][m]);
      if (lane == 0) red[(warp * kRows + r) * M + m] = s;
    }
  }
  __syncthreads();
  if (tid < kRows * M) {
    const int r = tid / M, m = tid - r * M, row = row0 + r;
    if (row < n) {
      float s = 0.0f;
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) s += red[(wi * kRows + r) * M + m];
      store(row, m, s);
    }
  }
}

}  // namespace glm::dev
