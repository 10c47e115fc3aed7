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
// GLM_HAS_SM90A, each with a portable twin the harness runs (fp8_gemm_sm90.cu is the first).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define GLM_DEVICE __device__ __forceinline__
#define GLM_HOST_DEVICE __host__ __device__ __forceinline__
#define GLM_KERNEL __global__
#define GLM_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
#define GLM_LAUNCH_BOUNDS_MIN(threads, min_blocks) __launch_bounds__(threads, min_blocks)
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
#define GLM_LAUNCH_BOUNDS_MIN(threads, min_blocks)
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

// IEEE binary16 -> fp32, exact for every code: the 15 exponent/mantissa bits moved to bits 13-27 read
// as an fp32 of 2^-112 times the half's value (a normal fp32 even for half subnormals), and the multiply
// by 2^112 is exact. Inf/NaN (exponent 31) are rebuilt separately, keeping NaN payloads quiet.
GLM_HOST_DEVICE float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, em = uint32_t(h & 0x7fffu);
  if (em >= 0x7c00u) return bits_to_float(sign | 0x7f800000u | ((em & 0x3ffu) << 13) | (em > 0x7c00u ? 0x400000u : 0u));
  return bits_to_float(sign | float_to_bits(bits_to_float(em << 13) * 5.192296858534828e33f));  // 2^112
}

GLM_DEVICE float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
GLM_DEVICE float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

#if !defined(__CUDACC__)
// The harness side of both mma.sync m16n8 wrappers: A in frag[0..3], B in frag[4..5], C in frag[6..9];
// the collective (harness.cc) computes D for the whole warp from every lane's registers.
inline void harness_mma_m16n8(::glm::harness::Collective op, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  ::glm::harness::Slot s{};
  s.op = op;
  s.mask = kFullMask;
  s.line = __LINE__;
  for (int i = 0; i < 4; ++i) s.frag[i] = a[i];
  s.frag[4] = b[0];
  s.frag[5] = b[1];
  for (int i = 0; i < 4; ++i) s.frag[6 + i] = __float_as_uint(d[i]);
  ::glm::harness::warp_collective(s);
  for (int i = 0; i < 4; ++i) d[i] = __uint_as_float(s.out_frag[i]);
}
#endif

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
  harness_mma_m16n8(::glm::harness::Collective::Mma16816Bf16, d, a, b);
#endif
}

// ---------------------------------------------------------------------------------------------
// Quantized formats (spec §5, §10). All conversions here are exact (or correctly rounded), identical
// on host, device and harness, so the kernel tests can compare bit for bit where the math allows.
// ---------------------------------------------------------------------------------------------

// OCP FP8 E4M3 (float8_e4m3fn): bias 7, no Inf, NaN = S.1111.111, max 448, subnormals m * 2^-9.
GLM_HOST_DEVICE float fp8_e4m3_to_float(uint8_t v) {
  const uint32_t s = uint32_t(v & 0x80u) << 24, e = (v >> 3) & 15u, m = v & 7u;
  if (e == 15u && m == 7u) return bits_to_float(s | 0x7fc00000u);
  if (e == 0u) return bits_to_float(s | float_to_bits(float(m) * 0.001953125f));  // m * 2^-9, exact
  return bits_to_float(s | ((e + 120u) << 23) | (m << 20));
}

// float -> E4M3, round to nearest even, saturating to +-448 (cvt.rn.satfinite.e4m3x2.f32), NaN -> NaN.
GLM_HOST_DEVICE uint8_t float_to_fp8_e4m3(float f) {
  uint32_t u = float_to_bits(f);
  const uint8_t s = uint8_t((u >> 24) & 0x80u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return uint8_t(s | 0x7fu);
  if (u >= 0x43e00000u) return uint8_t(s | 0x7eu);  // >= 448 (Inf too): satfinite
  if (u < 0x3c800000u) {                            // below 2^-6: subnormal quantum 2^-9
    const float q = rintf(bits_to_float(u) * 512.0f);  // exact scaling, RNE; 8 -> 0x08 = 2^-6
    return uint8_t(s | uint32_t(q));
  }
  uint32_t r = (u + 0x7ffffu + ((u >> 20) & 1u)) >> 20;  // RNE to 3 mantissa bits (may carry)
  r -= 120u << 3;                                        // rebias 127 -> 7
  return uint8_t(s | (r > 0x7eu ? 0x7eu : r));
}

// E8M0 shared scale: 2^(c - 127), 0xFF = NaN (0x00 = 2^-127, an fp32 subnormal).
GLM_HOST_DEVICE float e8m0_to_float(uint8_t c) {
  if (c == 0xffu) return bits_to_float(0x7fc00000u);
  if (c == 0u) return bits_to_float(0x00400000u);
  return bits_to_float(uint32_t(c) << 23);
}

// E2M1 nibble -> value (0, .5, 1, 1.5, 2, 3, 4, 6, sign in bit 3). Plain version for references and
// cold paths; kernels use mxfp4_word_to_bf16x2.
GLM_HOST_DEVICE float e2m1_to_float(uint32_t nibble) {
  const uint32_t em = nibble & 7u, e = em >> 1, m = em & 1u;
  const float mag = e == 0u ? 0.5f * float(m) : float(1u << (e - 1u)) * (1.0f + 0.5f * float(m));
  return (nibble & 8u) ? -mag : mag;
}

// prmt.b32 (default mode): byte i of the result is byte ((s >> 4i) & 7) of the pool {y:x} (callers keep
// bit 3 of each selector nibble clear, so the sign-replicate mode never applies).
GLM_DEVICE uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDACC__)
  return __byte_perm(x, y, s);
#else
  const uint64_t pool = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((pool >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
#endif
}

// Eight E2M1 nibbles of one 32-bit word (element 2j in the low nibble of byte j) -> four bf16x2 words,
// elements (0,1), (2,3), (4,5), (6,7), low half first; exact (every E2M1 value is a bf16), unscaled.
// The magnitude's two bf16 bytes come from two 8-entry byte tables looked up four at a time (prmt);
// two more prmt interleave them, and the sign bits are moved into bit 15 / 31.
GLM_DEVICE void mxfp4_word_to_bf16x2(uint32_t w, uint32_t (&out)[4]) {
  // bf16 of 0, .5, 1, 1.5, 2, 3, 4, 6: 0000 3F00 3F80 3FC0 4000 4040 4080 40C0.
  constexpr uint32_t kHiLo = 0x3f3f3f00u, kHiHi = 0x40404040u;
  constexpr uint32_t kLoLo = 0xc0800000u, kLoHi = 0xc0804000u;
  const uint32_t sel0 = w & 0x7777u, sel1 = (w >> 16) & 0x7777u;
  const uint32_t hi0 = byte_perm(kHiLo, kHiHi, sel0), lo0 = byte_perm(kLoLo, kLoHi, sel0);
  const uint32_t hi1 = byte_perm(kHiLo, kHiHi, sel1), lo1 = byte_perm(kLoLo, kLoHi, sel1);
  // Sign of element i is bit 4i+3 of w; it goes to bit 15 (even element) / 31 (odd) of word i/2.
  out[0] = byte_perm(lo0, hi0, 0x5140u) | ((w << 12) & 0x8000u) | ((w << 24) & 0x80000000u);
  out[1] = byte_perm(lo0, hi0, 0x7362u) | ((w << 4) & 0x8000u) | ((w << 16) & 0x80000000u);
  out[2] = byte_perm(lo1, hi1, 0x5140u) | ((w >> 4) & 0x8000u) | ((w << 8) & 0x80000000u);
  out[3] = byte_perm(lo1, hi1, 0x7362u) | ((w >> 12) & 0x8000u) | (w & 0x80000000u);
}
GLM_DEVICE float bf16x2_lo(uint32_t v) { return bits_to_float(v << 16); }
GLM_DEVICE float bf16x2_hi(uint32_t v) { return bits_to_float(v & 0xffff0000u); }

// Four E4M3 bytes of a word (byte j = element j) -> floats, exact for every finite code (subnormals
// included), in four integer ops and one multiply each: the byte's sign goes to bit 31 and its 7
// exponent/mantissa bits to bits 20-26, which reads as an fp32 of value 2^-120 times the E4M3 value
// (an fp32 subnormal when the E4M3 is one, same scaling); the multiply by 2^120 is exact. The NaN codes
// (0x7F/0xFF) come out as +-480, not NaN: use fp8_e4m3_to_float where NaN must survive.
GLM_DEVICE void fp8x4_to_float(uint32_t w, float (&out)[4]) {
  constexpr float k2p120 = 1.329227995784916e36f;  // 2^120
  out[0] = bits_to_float(uint32_t(int32_t(w << 24) >> 4) & 0x87f00000u) * k2p120;
  out[1] = bits_to_float(uint32_t(int32_t(w << 16) >> 4) & 0x87f00000u) * k2p120;
  out[2] = bits_to_float(uint32_t(int32_t(w << 8) >> 4) & 0x87f00000u) * k2p120;
  out[3] = bits_to_float(uint32_t(int32_t(w) >> 4) & 0x87f00000u) * k2p120;
}

// D(16x8, f32) += A(16x32, e4m3, row) * B(32x8, e4m3, col): mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32
// (sm_89+). Fragments (PTX ISA, 8-bit element types; group = lane/4, tig = lane%4; four elements per
// register, lowest k in the low byte):
//   A: a[0] row group, k 4*tig..+3; a[1] row group+8, same k; a[2] row group, k 16+4*tig..+3; a[3] row group+8.
//   B: b[0] k 4*tig..+3, col group; b[1] k 16+4*tig..+3.   C/D: as m16n8k16.
// These are exactly what ldmatrix (non-trans) returns for 8x16-byte row tiles, so the fp8 tiles load
// the way the bf16 ones do. On sm_80 the same fragments run as two bf16 mma (see _via_bf16).
// Two e4m3 bytes -> bf16x2 (exact: every E4M3 value is a bf16).
GLM_DEVICE uint32_t fp8x2_to_bf16x2(uint32_t two) {
  const uint32_t lo = float_to_bits(fp8_e4m3_to_float(uint8_t(two))) >> 16;
  const uint32_t hi = float_to_bits(fp8_e4m3_to_float(uint8_t(two >> 8))) & 0xffff0000u;
  return lo | hi;
}

// The m16n8k32 e4m3 product as two m16n8k16 bf16 products. The sum over k does not care which bf16
// k-slot an fp8 k lands in, as long as A and B agree; lane (group, tig) holds fp8 k 4*tig..4*tig+3 of
// both its A rows and its B column, so bytes 0-1 go to bf16 k 2*tig..+1 and bytes 2-3 to k 8+2*tig..+1
// of the first mma (a[0], a[1], b[0]: k < 16), likewise a[2], a[3], b[1] for the second (k >= 16).
GLM_DEVICE void mma_m16n8k32_e4m3_via_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  for (int h = 0; h < 2; ++h) {
    const uint32_t r0 = a[2 * h], r1 = a[2 * h + 1], bb = b[h];
    const uint32_t ab[4] = {fp8x2_to_bf16x2(r0), fp8x2_to_bf16x2(r1), fp8x2_to_bf16x2(r0 >> 16), fp8x2_to_bf16x2(r1 >> 16)};
    const uint32_t bh[2] = {fp8x2_to_bf16x2(bb), fp8x2_to_bf16x2(bb >> 16)};
    mma_m16n8k16_bf16(d, ab, bh);
  }
}

GLM_DEVICE void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  mma_m16n8k32_e4m3_via_bf16(d, a, b);
#endif
#else
  harness_mma_m16n8(::glm::harness::Collective::Mma16832E4m3, d, a, b);
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
// cp.async.ca.shared.global, 4 bytes: the same contract for rows whose width is a multiple of 4 bytes
// but not of 16 (narrow KV rows: an FP8 row of head_dim 36 is 36 bytes). Both addresses 4-byte aligned.
GLM_DEVICE void cp_async_4(void* dst_shared, const void* src_global, int src_bytes) {
#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst_shared));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src_global), "r"(src_bytes) : "memory");
#endif
#else
  ::glm::harness::cp_async(dst_shared, src_global, 4, src_bytes);
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
