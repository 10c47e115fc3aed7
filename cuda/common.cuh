// What every kernel file includes: the portability layer between nvcc and the CPU execution harness
// (cuda/harness), and the project's thin device wrappers for tensor-core and async-copy instructions.
//
// Kernels are written in plain CUDA C++ with three project conventions, so the same source compiles
// with nvcc for the GPU and with g++ for the harness:
//   - static shared memory is declared with GLM_SHARED(T, name, count), dynamic with
//     GLM_DYNAMIC_SHARED(T, name) (the harness gives each block its own poisoned, red-zoned copy);
//   - every launch goes through GLM_LAUNCH(kernel, grid, block, smem_bytes, stream, args...), which
//     evaluates to a cudaError_t;
//   - mma / ldmatrix / cp.async are reached only through the glm::dev wrappers below, each of which
//     has a CPU implementation of the PTX ISA's documented semantics in the harness.
// Hopper-only instructions (wgmma, TMA, setmaxnreg) belong in separate fast-path kernels guarded by
// GLM_HAS_SM90A, each with a portable twin the harness runs (none exists yet).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define GLM_DEVICE __device__ __forceinline__
#define GLM_HOST_DEVICE __host__ __device__ __forceinline__
#define GLM_KERNEL __global__
#define GLM_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
#define GLM_SHARED(T, name, count) __shared__ __align__(16) T name[count]
#define GLM_DYNAMIC_SHARED(T, name)                                  \
  extern __shared__ __align__(16) unsigned char glm_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(glm_dynamic_smem_)
#define GLM_LAUNCH(kernel, grid, block, smem, stream, ...) \
  (kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__), cudaGetLastError())
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GLM_HAS_SM90A 1
#endif
#else
#include "harness/harness.h"
#define GLM_DEVICE inline
#define GLM_HOST_DEVICE inline
#define GLM_KERNEL
#define GLM_LAUNCH_BOUNDS(threads)
#define GLM_SHARED(T, name, count) \
  T* name = static_cast<T*>(::glm::harness::static_shared(sizeof(T) * size_t(count), alignof(T), #name))
#define GLM_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::glm::harness::dynamic_shared())
#define GLM_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::glm::harness::launch_kernel(&(kernel), #kernel, (grid), (block), (smem), (stream), __VA_ARGS__)
#endif

namespace glm::dev {

constexpr unsigned kFullMask = 0xffffffffu;

// Bit casts usable on host and device (__uint_as_float is device-only under nvcc).
GLM_HOST_DEVICE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}
GLM_HOST_DEVICE uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u;
#endif
}

// bf16 is carried as its raw 16 bits so host code, kernels and the harness agree on one type.
GLM_HOST_DEVICE float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }
// Round-to-nearest-even, NaN kept quiet (the conversion HF/PyTorch use).
GLM_HOST_DEVICE uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

GLM_DEVICE float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
GLM_DEVICE float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// D(16x8, f32) += A(16x16, bf16, row) * B(16x8, bf16, col): mma.sync.aligned.m16n8k16.row.col.
// Fragment layouts are the PTX ISA's (see the harness's implementation for the formulas).
GLM_DEVICE void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
#else
  ::glm::harness::Slot s{};
  s.op = ::glm::harness::Collective::Mma16816Bf16;
  s.mask = kFullMask;
  s.line = __LINE__;
  for (int i = 0; i < 4; ++i) s.frag[i] = a[i];
  s.frag[4] = b[0];
  s.frag[5] = b[1];
  for (int i = 0; i < 4; ++i) s.frag[6 + i] = __float_as_uint(d[i]);
  ::glm::harness::warp_collective(s);
  for (int i = 0; i < 4; ++i) d[i] = __uint_as_float(s.out_frag[i]);
#endif
}

// ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16: lanes 8i..8i+7 pass the row addresses (16-byte
// aligned shared memory) of matrix i; r[i] receives this lane's two elements of matrix i.
template <int N, bool Trans>
GLM_DEVICE void ldmatrix(uint32_t (&r)[N], const void* row_address) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  if constexpr (N == 1 && !Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  if constexpr (N == 1 && Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  if constexpr (N == 2 && !Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  if constexpr (N == 2 && Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  if constexpr (N == 4 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  if constexpr (N == 4 && Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#endif
#else
  ::glm::harness::Slot s{};
  s.op = ::glm::harness::Collective::LdMatrix;
  s.mask = kFullMask;
  s.line = __LINE__;
  s.address = row_address;
  s.count = N;
  s.trans = Trans;
  ::glm::harness::warp_collective(s);
  for (int i = 0; i < N; ++i) r[i] = s.out_frag[i];
#endif
}

// cp.async.cg.shared.global, 16 bytes: copies src_bytes (0..16) from global memory and zero-fills the
// rest (src_bytes = 0 turns an out-of-range row into zeros without a branch). Both addresses 16-byte
// aligned. Completes only after cp_async_commit() + cp_async_wait<n>() in the issuing thread, and other
// threads see the data only after a __syncthreads() that follows the wait.
GLM_DEVICE void cp_async_16(void* dst_shared, const void* src_global, int src_bytes) {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst_shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src_global), "r"(src_bytes) : "memory");
#endif
#else
  ::glm::harness::cp_async(dst_shared, src_global, 16, src_bytes);
#endif
}
GLM_DEVICE void cp_async_commit() {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
#else
  ::glm::harness::cp_async_commit();
#endif
}
// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
GLM_DEVICE void cp_async_wait() {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
#else
  ::glm::harness::cp_async_wait(Pending);
#endif
}

}  // namespace glm::dev
