// FP8 E4M3 GEMM, Hopper fast path: the same contract as fp8_gemm (portable twin, fp8_gemm.cu), with
// the products on wgmma (sm_90a). Compiled for sm_90a in CI and checked by ptxas; it has never run:
// only scripts/gpu-check.sh on a lent H200 can verify it (fp8_gemm_sm90_twin_matches_when_available
// compares it with the float64 references on the device; the harness cannot execute wgmma).
//
// Block: one warpgroup (128 threads) computes a 64x128 tile; K steps of 128 bytes (one scale block),
// double-buffered with cp.async (16-byte pieces, zero-filled past the matrix). Shared tiles use the
// no-swizzle K-major canonical layout of wgmma: 8-row x 16-byte core matrices stored contiguously,
// core matrix (row group r8, 16-byte column kc) at (r8 * 8 + kc) * 128 bytes, so the descriptor's
// leading (K) byte offset is 128 and its stride (8-row group) offset 1024; a k32 step advances the
// start address by two core matrices. Per K step: 4 wgmma (k32) into either the running accumulator
// (PerChannel: one chain over all K, scales in the epilogue) or a block partial started with scale-d = 0
// and promoted in fp32 with s_x[m, kb] * s_w[n/128, kb] (Block128; the 128-wide n tile is exactly one
// weight scale block).
// TMA (cp.async.bulk.tensor) and a producer/consumer split with setmaxnreg are the next steps once
// this version's numbers exist; cp.async keeps this first version close to its twin.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"
#include "wgmma_sm90.cuh"

namespace glm::cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 128;
constexpr int kThreads = 128;
constexpr int kATile = kBM * kBK, kBTile = kBN * kBK;
constexpr int kStage = kATile + kBTile;          // 24 KiB
constexpr int kSmem = 2 * kStage;                // 48 KiB (dynamic)

#if defined(__CUDACC__)
#if defined(GLM_HAS_SM90A)
using dev::sm90::kCore;
using dev::sm90::smem_desc;
// Byte offset of (row, 16-byte piece p) in this kernel's no-swizzle K-major tiles (kBK bytes per row).
__device__ __forceinline__ int core_offset(int row, int p) { return dev::sm90::core_offset<kBK>(row, p); }

__device__ __forceinline__ void issue(uint8_t* dst, const uint8_t* src, int rows_total, int k, int r0, int k0, int rows,
                                      int tid) {
  for (int idx = tid; idx < rows * (kBK / 16); idx += kThreads) {
    const int r = idx >> 3, p = idx & 7, row = r0 + r, col = k0 + 16 * p;
    const bool ok = row < rows_total && col < k;
    dev::cp_async_16(dst + core_offset(r, p), ok ? src + int64_t(row) * k + col : src, ok ? 16 : 0);
  }
}

// One wgmma.mma_async m64n128k32 e4m3 x e4m3 -> f32 (A and B K-major in shared memory, described by
// desc_a / desc_b); accumulate = false overwrites d (scale-d = 0), true adds to it.
__device__ __forceinline__ void wgmma_m64n128k32_e4m3(float (&d)[64], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));
}
#endif

// ptxas: hot fp8_gemm_sm90_kernel
template <bool kBlockScaled>
__global__ void __launch_bounds__(kThreads, 1) fp8_gemm_sm90_kernel(float* y, const uint8_t* xq, const float* x_scales,
                                                                   const uint8_t* wq, const float* w_scales, int M, int N, int K) {
#if defined(GLM_HAS_SM90A)
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (K + kBK - 1) / kBK;
  float acc[64], part[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;

  issue(smem, xq, M, K, m0, 0, kBM, tid);
  issue(smem + kATile, wq, N, K, n0, 0, kBN, tid);
  dev::cp_async_commit();
  for (int t = 0; t < steps; ++t) {
    uint8_t* cur = smem + (t & 1) * kStage;
    if (t + 1 < steps) {
      uint8_t* nxt = smem + ((t + 1) & 1) * kStage;
      issue(nxt, xq, M, K, m0, (t + 1) * kBK, kBM, tid);
      issue(nxt + kATile, wq, N, K, n0, (t + 1) * kBK, kBN, tid);
    }
    dev::cp_async_commit();
    dev::cp_async_wait<1>();
    dev::sm90::fence_proxy_async_shared();  // cp.async data -> the wgmma (async proxy)
    __syncthreads();
    dev::sm90::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      const uint64_t da = smem_desc(cur + ks * 2 * kCore, kCore, (kBK / 16) * kCore);
      const uint64_t db = smem_desc(cur + kATile + ks * 2 * kCore, kCore, (kBK / 16) * kCore);
      if (kBlockScaled) wgmma_m64n128k32_e4m3(part, da, db, ks > 0);
      else wgmma_m64n128k32_e4m3(acc, da, db, true);
    }
    dev::sm90::wgmma_commit_group();
    dev::sm90::wgmma_wait_group_0();
    if (kBlockScaled) {
      const float sw = __ldg(w_scales + int64_t(n0 / 128) * steps + t);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + 16 * warp + g + 8 * h;
        const float s = (row < M ? __ldg(x_scales + int64_t(row) * steps + t) : 0.0f) * sw;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          acc[4 * j + 2 * h] = fmaf(part[4 * j + 2 * h], s, acc[4 * j + 2 * h]);
          acc[4 * j + 2 * h + 1] = fmaf(part[4 * j + 2 * h + 1], s, acc[4 * j + 2 * h + 1]);
        }
      }
    }
    __syncthreads();  // the next step's copies overwrite the stage just read
  }
  // D fragment of m64nN: warp w owns rows 16w..16w+15; register 4j+c: row g + 8*(c/2), column 8j + 2*tig + c%2.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = m0 + 16 * warp + g + 8 * h;
    if (row >= M) continue;
    const float sx = kBlockScaled ? 1.0f : __ldg(x_scales + row);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = n0 + 8 * j + 2 * tig + c;
        if (col >= N) continue;
        const float v = acc[4 * j + 2 * h + c];
        y[int64_t(row) * N + col] = kBlockScaled ? v : v * sx * __ldg(w_scales + col);
      }
    }
  }
#endif
}

bool sm90a_binary() {
  static const bool yes = detail::sm90a_image_picked(reinterpret_cast<const void*>(fp8_gemm_sm90_kernel<false>));
  return yes;
}
#endif  // __CUDACC__

}  // namespace

bool fp8_gemm_sm90_available() {
#if defined(__CUDACC__)
  return sm90a_binary();
#else
  return false;  // the harness cannot execute wgmma: it runs the portable twin
#endif
}

Status fp8_gemm_sm90(Stream stream, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m) {
  const char* op = "fp8_gemm_sm90";
  Status st = detail::check_fp8_gemm(op, y, xq, x_scales, w, m);
  if (!st.is_ok()) return st;
  if (!fp8_gemm_sm90_available()) return Status::error(ErrorCode::UnsupportedFormat, "fp8_gemm_sm90: needs an sm_90a build on a compute 9.0 device");
  if (m == 0) return Status::ok();
#if defined(__CUDACC__)
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((m + kBM - 1) / kBM));
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t e;
  if (w.scaling == Fp8Scaling::Block128) {
    e = cudaFuncSetAttribute(fp8_gemm_sm90_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (e == cudaSuccess) e = GLM_LAUNCH(fp8_gemm_sm90_kernel<true>, grid, dim3(kThreads), kSmem, s, y, xq, x_scales, w.data, w.scales, int(m), int(w.n), int(w.k));
  } else {
    e = cudaFuncSetAttribute(fp8_gemm_sm90_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (e == cudaSuccess) e = GLM_LAUNCH(fp8_gemm_sm90_kernel<false>, grid, dim3(kThreads), kSmem, s, y, xq, x_scales, w.data, w.scales, int(m), int(w.n), int(w.k));
  }
  return detail::launched(op, e);
#else
  return Status::error(ErrorCode::Internal, "unreachable");
#endif
}

}  // namespace glm::cuda
