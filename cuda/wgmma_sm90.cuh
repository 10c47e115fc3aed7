// Pieces the two Hopper wgmma GEMMs (linear_gemm_sm90.cu, fp8_gemm_sm90.cu) share word for word: the
// no-swizzle K-major shared tile layout, its matrix descriptor, and the proxy / wgmma fences. Moved here
// verbatim (only the row size became a template argument) so the two kernels cannot drift apart in the
// one place that is easy to get wrong and that no test here can execute: the harness cannot run wgmma,
// only scripts/gpu-check.sh on an H200 does. The wgmma instructions themselves differ (bf16 k16 vs e4m3
// k32 with a scale-d predicate) and stay in their kernels.
//
// Device pieces are sm_90a-only (under GLM_HAS_SM90A, set by common.cuh for sm_90a device passes); the
// host-side image check below is compiled by nvcc only (the harness never runs a wgmma kernel).
#pragma once
#include "common.cuh"

#if defined(__CUDACC__) && defined(GLM_HAS_SM90A)
namespace glm::dev::sm90 {

constexpr int kCore = 128;  // bytes per 8x16-byte core matrix

// Byte offset of (row, 16-byte piece p) in a no-swizzle K-major tile with kRowBytes per row: core
// matrix (row group r8, piece p) at (r8 * kRowBytes / 16 + p) * 128 bytes, row r % 8 of it 16 bytes in.
template <int kRowBytes>
__device__ __forceinline__ int core_offset(int row, int p) { return ((row >> 3) * (kRowBytes / 16) + p) * kCore + (row & 7) * 16; }

// wgmma shared-memory matrix descriptor: start address, leading (K) and stride (8-row group) byte
// offsets, each in 16-byte units; no swizzle, base offset 0.
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return uint64_t((a & 0x3ffffu) >> 4) | uint64_t((lbo >> 4) & 0x3fffu) << 16 | uint64_t((sbo >> 4) & 0x3fffu) << 32;  // no swizzle
}

// Generic-proxy writes to shared memory (st.shared, cp.async) -> reads by the async proxy (wgmma).
// Issue before the barrier that publishes the tile.
__device__ __forceinline__ void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Orders this warpgroup's register / shared accesses before the wgmma that follow.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit_group() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until no committed wgmma group is pending (their accumulators are readable).
__device__ __forceinline__ void wgmma_wait_group_0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

}  // namespace glm::dev::sm90
#endif

#if defined(__CUDACC__)
namespace glm::cuda::detail {
// True when the current device is compute 9.0 and the loader picked the sm_90a image of `kernel` (a
// wgmma kernel's body is empty in every other image). Both fast paths ask this once, at first use.
inline bool sm90a_image_picked(const void* kernel) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) return false;
  return major == 9 && minor == 0 && attr.binaryVersion == 90;  // the sm_90a image was picked
}
}  // namespace glm::cuda::detail
#endif
