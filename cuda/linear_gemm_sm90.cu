// Dense BF16 GEMM, Hopper fast path: the contract of linear_gemm's BF16 path (portable twin,
// linear_gemm.cu) — y[m, n] (+)= sum_k bf16(x[m, k]) * W[n, k] (+ bias[n]), fp32 accumulation — with
// the products on wgmma m64n128k16 (sm_90a). Compiled for sm_90a in CI and checked by ptxas; it has
// never run: only scripts/gpu-check.sh on a lent H200 can verify it (linear_gemm_sm90_twin_matches_when_available
// compares it with linear_gemm and the float64 reference there; the harness cannot execute wgmma), and
// the CUDA backend uses it only after a load-time self-test against linear_gemm passes.
//
// Block: two warpgroups (256 threads), a 128x128 output tile (warpgroup w: rows 64w..64w+63, all 128
// columns, 64 fp32 accumulators per thread); K steps of 64 bf16 (128 bytes per row), two stages.
// W (already bf16) arrives by cp.async; x is fp32 and must be rounded to bf16 on the way, so it is
// loaded into registers one step ahead (8 float4 per thread), rounded and stored with ordinary stores,
// made visible to the async proxy by fence.proxy.async before the barrier. Shared tiles use the
// no-swizzle K-major canonical layout (as fp8_gemm_sm90): 8-row x 16-byte core matrices, core matrix
// (row group r8, 16-byte column p) at (r8 * 8 + p) * 128 bytes, so the descriptor's leading (K) byte
// offset is 128 and its stride (8-row group) offset 1024; a k16 step is two core matrices (256 bytes).
// TMA with swizzled tiles and a deeper mbarrier pipeline are the next steps once this version has run.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"
#include "wgmma_sm90.cuh"

namespace glm::cuda {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 64;  // kBK in bf16 (128 bytes)
constexpr int kThreads = 256;
constexpr int kRowBytes = kBK * 2;
constexpr int kATile = kBM * kRowBytes, kBTile = kBN * kRowBytes;  // 16 KiB each
constexpr int kStage = kATile + kBTile;
constexpr int kSmem = 2 * kStage;  // 64 KiB (dynamic)

#if defined(__CUDACC__)
#if defined(GLM_HAS_SM90A)
using dev::sm90::kCore;
using dev::sm90::smem_desc;
// Byte offset of (row, 16-byte piece p) in this kernel's no-swizzle K-major tiles (kRowBytes bytes per row).
__device__ __forceinline__ int core_offset(int row, int p) { return dev::sm90::core_offset<kRowBytes>(row, p); }

struct StagedX {
  float4 v[8];
};
// x: 128 rows x 16 float4 per step, 8 per thread; zeros past the matrix.
__device__ __forceinline__ void load_x(StagedX& st, const float* x, int M, int K, int m0, int k0, int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15, row = m0 + r, col = k0 + 4 * c4;
    st.v[i] = row < M && col < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(row) * K + col)) : float4{0, 0, 0, 0};
  }
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(dev::float_to_bf16(lo)) | uint32_t(dev::float_to_bf16(hi)) << 16;
}
__device__ __forceinline__ void store_x(const StagedX& st, uint8_t* a_tile, int tid) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;  // 4 bf16 = half a 16-byte piece
    const uint2 v{pack_bf16x2(st.v[i].x, st.v[i].y), pack_bf16x2(st.v[i].z, st.v[i].w)};
    *reinterpret_cast<uint2*>(a_tile + core_offset(r, c4 >> 1) + 8 * (c4 & 1)) = v;
  }
}
// W: 128 rows x 8 pieces of 16 bytes per step (K is a multiple of 8: a piece is all in or all out).
__device__ __forceinline__ void issue_w(uint8_t* b_tile, const uint16_t* w, int N, int K, int n0, int k0, int tid) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 3, p = idx & 7, row = n0 + r, col = k0 + 8 * p;
    const bool ok = row < N && col < K;
    dev::cp_async_16(b_tile + core_offset(r, p), ok ? w + int64_t(row) * K + col : w, ok ? 16 : 0);
  }
}

// One wgmma.mma_async m64n128k16 bf16 x bf16 -> f32, A and B K-major (no transpose) in shared memory;
// always accumulates (d starts at zero).
__device__ __forceinline__ void wgmma_m64n128k16_bf16(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, 1, 1, 1, 0, 0;\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b));
}
#endif

// ptxas: hot linear_gemm_sm90_kernel
__global__ void __launch_bounds__(kThreads, 1) linear_gemm_sm90_kernel(float* y, const float* x, const uint16_t* w, const float* bias,
                                                                      int M, int N, int K, int accumulate) {
#if defined(GLM_HAS_SM90A)
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int g = lane >> 2, tig = lane & 3;
  const int m0 = int(blockIdx.y) * kBM, n0 = int(blockIdx.x) * kBN;
  const int steps = (K + kBK - 1) / kBK;
  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;

  StagedX st;
  load_x(st, x, M, K, m0, 0, tid);
  issue_w(smem + kATile, w, N, K, n0, 0, tid);
  dev::cp_async_commit();
  store_x(st, smem, tid);
  for (int t = 0; t < steps; ++t) {
    uint8_t* cur = smem + (t & 1) * kStage;
    uint8_t* nxt = smem + ((t + 1) & 1) * kStage;
    const bool more = t + 1 < steps;
    if (more) {
      issue_w(nxt + kATile, w, N, K, n0, (t + 1) * kBK, tid);
      load_x(st, x, M, K, m0, (t + 1) * kBK, tid);  // in flight during this step's wgmma
    }
    dev::cp_async_commit();
    dev::cp_async_wait<1>();
    dev::sm90::fence_proxy_async_shared();  // st.shared and cp.async data -> wgmma (async proxy)
    __syncthreads();
    dev::sm90::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      const uint64_t da = smem_desc(cur + wg * (kATile / 2) + ks * 2 * kCore, kCore, (kRowBytes / 16) * kCore);
      const uint64_t db = smem_desc(cur + kATile + ks * 2 * kCore, kCore, (kRowBytes / 16) * kCore);
      wgmma_m64n128k16_bf16(acc, da, db);
    }
    dev::sm90::wgmma_commit_group();
    // The other stage's x tile was last read by step t-1's wgmma, which every thread waited for before
    // the barrier above: it can be written while this step's wgmma runs.
    if (more) store_x(st, nxt, tid);
    dev::sm90::wgmma_wait_group_0();
    __syncthreads();  // the next step's copies overwrite the stage just read
  }
  // D fragment of m64nN: warp w%4 owns rows 16(w%4)..+15 of its warpgroup's 64; register 4j+c: row
  // g + 8*(c/2), column 8j + 2*tig + c%2.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = m0 + 64 * wg + 16 * (warp & 3) + g + 8 * h;
    if (row >= M) continue;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = n0 + 8 * j + 2 * tig + c;
        if (col >= N) continue;
        float v = acc[4 * j + 2 * h + c];
        if (bias) v += __ldg(bias + col);
        float* out = y + int64_t(row) * N + col;
        *out = accumulate ? *out + v : v;
      }
    }
  }
#endif
}

bool sm90a_binary() {
  static const bool yes = detail::sm90a_image_picked(reinterpret_cast<const void*>(linear_gemm_sm90_kernel));
  return yes;
}
#endif  // __CUDACC__

}  // namespace

bool linear_gemm_sm90_available() {
#if defined(__CUDACC__)
  return sm90a_binary();
#else
  return false;  // the harness cannot execute wgmma: it runs the portable twin
#endif
}

Status linear_gemm_sm90(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args) {
  const char* op = "linear_gemm_sm90";
  if (Status st = detail::check_linear(op, y, x, w, args); !st.is_ok()) return st;
  if (w.type != WeightType::BF16 || args.fp32_activations) return detail::invalid(op, "BF16 weights and bf16 activations only");
  if (!linear_gemm_sm90_available()) {
    return Status::error(ErrorCode::UnsupportedFormat, "linear_gemm_sm90: needs an sm_90a build on a compute 9.0 device");
  }
  if (args.m == 0) return Status::ok();
  if (args.m > int64_t(65535) * kBM) return detail::invalid(op, "m too large");
#if defined(__CUDACC__)
  const dim3 grid(unsigned((w.n + kBN - 1) / kBN), unsigned((args.m + kBM - 1) / kBM));
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t e = cudaFuncSetAttribute(linear_gemm_sm90_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e == cudaSuccess) {
    e = GLM_LAUNCH(linear_gemm_sm90_kernel, grid, dim3(kThreads), kSmem, s, y, x, static_cast<const uint16_t*>(w.data), w.bias,
                   int(args.m), int(w.n), int(w.k), args.accumulate ? 1 : 0);
  }
  return detail::launched(op, e);
#else
  return Status::error(ErrorCode::Internal, "unreachable");
#endif
}

}  // namespace glm::cuda
