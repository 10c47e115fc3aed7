// Appends the new tokens' K and V rows to the paged device cache (layout and element types: ops.h
// KvLayout, kv_rows.cuh), converting each row to the pool's type exactly as the CPU's KvStorage::write
// does, so the CUDA and CPU caches hold the same bytes. One block per (token, kv head).
//   F32   16-byte copies.
//   BF16  round to nearest even (NaN kept quiet: dev::float_to_bf16 is engine/dtype.h's f32_to_bf16).
//   FP8   amax = max |x| over the row (NaN ignored, as std::max(amax, |x|) ignores it), scale = amax / 448,
//         inv = 1 / scale (0 when scale is 0 or not finite), code = e4m3_rn_satfinite(x * inv) with the
//         NaN code 0x7f whatever the sign (f32_to_e4m3's rule); a row with an infinity (amax not finite)
//         keeps its unscaled values (saturated) and scale 1. IEEE division and multiply, no FMA and no
//         flush to zero: the same operations in the same precision as the CPU, so bit for bit equal.
#include "common.cuh"
#include "kv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 64;
constexpr int kWarps = kThreads / 32;

GLM_DEVICE bool is_nan(float x) { return (dev::float_to_bits(x) & 0x7fffffffu) > 0x7f800000u; }
GLM_DEVICE bool is_finite(float x) { return (dev::float_to_bits(x) & 0x7f800000u) != 0x7f800000u; }
GLM_DEVICE uint32_t fp8_code(float x) { return is_nan(x) ? 0x7fu : uint32_t(dev::float_to_fp8_e4m3(x)); }

// ptxas: hot kv_append_kernel
// (FP8: a minimum of one block per SM, or CUDA 13's ptxas spills a few bytes around the IEEE divisions'
// slow path to save registers; F32 and BF16 compile as without it.)
template <KvElem T>
GLM_KERNEL void GLM_LAUNCH_BOUNDS_MIN(kThreads, T == KvElem::FP8 ? 1 : 0) kv_append_kernel(void* pool_v, float* scales, const float* k, const float* v,
                                                             const int32_t* slots, int n_kv_heads, int head_dim,
                                                             int page_tokens, int64_t n_pages) {
  GLM_SHARED(float, amax_s, 2 * kWarps);  // FP8: each warp's amax of the K and of the V row
  const int64_t row = blockIdx.x;
  const int head = int(blockIdx.y);
  const int32_t slot = slots[row];
  if (slot < 0 || int64_t(slot) >= n_pages * page_tokens) return;  // padding row / outside the pool (block-uniform)
  const int64_t page = slot / page_tokens, in_page = slot % page_tokens;
  const int64_t rk = kv::row_index(page, 0, head, int(in_page), n_kv_heads, page_tokens);
  const int64_t rv = kv::row_index(page, 1, head, int(in_page), n_kv_heads, page_tokens);
  const float4* sk = reinterpret_cast<const float4*>(k + (row * n_kv_heads + head) * head_dim);
  const float4* sv = reinterpret_cast<const float4*>(v + (row * n_kv_heads + head) * head_dim);
  const int n4 = head_dim / 4;  // head_dim % 4 == 0 and 16-byte aligned bases: checked by the launcher
  const int tid = int(threadIdx.x);
  if constexpr (T == KvElem::F32) {
    float4* dk = reinterpret_cast<float4*>(static_cast<float*>(pool_v) + rk * head_dim);
    float4* dv = reinterpret_cast<float4*>(static_cast<float*>(pool_v) + rv * head_dim);
    for (int i = tid; i < n4; i += kThreads) {
      dk[i] = sk[i];
      dv[i] = sv[i];
    }
  } else if constexpr (T == KvElem::BF16) {
    // Rows of 2 * head_dim bytes: 8-byte aligned, four elements per store.
    uint2* dk = reinterpret_cast<uint2*>(static_cast<uint16_t*>(pool_v) + rk * head_dim);
    uint2* dv = reinterpret_cast<uint2*>(static_cast<uint16_t*>(pool_v) + rv * head_dim);
    auto pack = [](const float4& x) {
      return uint2{uint32_t(dev::float_to_bf16(x.x)) | uint32_t(dev::float_to_bf16(x.y)) << 16,
                   uint32_t(dev::float_to_bf16(x.z)) | uint32_t(dev::float_to_bf16(x.w)) << 16};
    };
    for (int i = tid; i < n4; i += kThreads) {
      dk[i] = pack(sk[i]);
      dv[i] = pack(sv[i]);
    }
  } else {
    // Row amax: max is exact and order-free, and fmaxf drops a NaN operand as the CPU's std::max does.
    float ak = 0.0f, av = 0.0f;
    for (int i = tid; i < n4; i += kThreads) {
      const float4 a = sk[i], b = sv[i];
      ak = fmaxf(fmaxf(ak, fabsf(a.x)), fmaxf(fmaxf(fabsf(a.y), fabsf(a.z)), fabsf(a.w)));
      av = fmaxf(fmaxf(av, fabsf(b.x)), fmaxf(fmaxf(fabsf(b.y), fabsf(b.z)), fabsf(b.w)));
    }
    ak = dev::warp_max(ak);
    av = dev::warp_max(av);
    const int lane = tid & 31, warp = tid >> 5;
    if (lane == 0) amax_s[warp] = ak, amax_s[kWarps + warp] = av;
    __syncthreads();
    uint8_t* base = static_cast<uint8_t*>(pool_v);
    for (int which = 0; which < 2; ++which) {
      float amax = 0.0f;
      for (int w = 0; w < kWarps; ++w) amax = fmaxf(amax, amax_s[which * kWarps + w]);
      const bool finite = is_finite(amax);
      const float scale = amax / 448.0f;  // IEEE division (no fast-math in this build), as the CPU
      const float inv = scale > 0.0f && is_finite(scale) ? 1.0f / scale : 0.0f;
      const float4* src = which ? sv : sk;
      uint32_t* dst = reinterpret_cast<uint32_t*>(base + (which ? rv : rk) * head_dim);  // 4-byte aligned rows
      for (int i = tid; i < n4; i += kThreads) {
        float4 x = src[i];
        if (finite) x = float4{x.x * inv, x.y * inv, x.z * inv, x.w * inv};
        dst[i] = fp8_code(x.x) | fp8_code(x.y) << 8 | fp8_code(x.z) << 16 | fp8_code(x.w) << 24;
      }
      if (tid == 0) scales[which ? rv : rk] = finite ? scale : 1.0f;
    }
  }
}

template <KvElem T>
cudaError_t launch(const dim3& grid, cudaStream_t s, void* pool, float* scales, const float* k, const float* v,
                   const int32_t* slots, const KvLayout& L) {
  return GLM_LAUNCH(kv_append_kernel<T>, grid, dim3(kThreads), 0, s, pool, scales, k, v, slots, int(L.n_kv_heads),
                    int(L.head_dim), int(L.page_tokens), L.n_pages);
}

}  // namespace

Status kv_append(Stream stream, void* pool, float* scales, const KvLayout& L, const float* k, const float* v,
                 const int32_t* slots, int64_t rows) {
  constexpr const char* op = "kv_append";
  if (!pool || !k || !v || !slots) return detail::invalid(op, "null pointer");
  if (L.type == KvElem::FP8 && !scales) return detail::invalid(op, "an FP8 pool needs its scales");
  if (rows < 0 || L.n_kv_heads <= 0 || L.page_tokens <= 0 || L.n_pages <= 0) return detail::invalid(op, "bad dimensions");
  if (L.head_dim <= 0 || L.head_dim % 4) return detail::invalid(op, "head_dim must be a positive multiple of 4");
  if (!detail::aligned(pool, 16) || !detail::aligned(k, 16) || !detail::aligned(v, 16)) return detail::invalid(op, "pool, k and v must be 16-byte aligned");
  if (rows > 0x7fffffff || L.n_kv_heads > 65535 || L.n_pages * L.page_tokens > 0x7fffffff) return detail::invalid(op, "dimensions too large");
  if (rows == 0) return Status::ok();
  const dim3 grid(unsigned(rows), unsigned(L.n_kv_heads));
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t err = cudaSuccess;
  switch (L.type) {
    case KvElem::F32: err = launch<KvElem::F32>(grid, s, pool, scales, k, v, slots, L); break;
    case KvElem::BF16: err = launch<KvElem::BF16>(grid, s, pool, scales, k, v, slots, L); break;
    case KvElem::FP8: err = launch<KvElem::FP8>(grid, s, pool, scales, k, v, slots, L); break;
  }
  return detail::launched(op, err);
}

}  // namespace glm::cuda
