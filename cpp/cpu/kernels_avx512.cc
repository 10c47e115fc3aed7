// AVX-512F/BW/VL kernels (built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2;
// only called after cpuid says the CPU has all of them). Weights are widened to fp32 in registers:
// BF16 by zero-extending to 32 bits and shifting left 16 (exact), F16 with vcvtph2ps (exact, including
// subnormals). K tails use masked loads, so no element past the end of a row is read.
#include "cpu/kernels.h"

#if defined(GLM_X86) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__FMA__) && defined(__F16C__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 headers self-initialise their "undefined" vectors (GCC bug 105593), which -Wall
// reports at every inlined use; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <array>
#include <utility>

namespace glm::cpu {
namespace {

using detail::BlockFn;

// 16 consecutive weights from element k as fp32; the masked form reads only the lanes in m.
template <DType WT>
inline __m512 load_w(const void* w, int64_t k) {
  if constexpr (WT == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + k);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + k));
    if constexpr (WT == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}
template <DType WT>
inline __m512 load_w_masked(const void* w, int64_t k, __mmask16 m) {
  if constexpr (WT == DType::F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + k);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + k);
    if constexpr (WT == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

// R weight rows × C tokens, one 16-lane accumulator each (R*C + R + 1 registers of 32). Per 16-wide
// step: R weight loads and C activation loads feed R*C FMAs. Small blocks unroll K by U so there are
// at least four independent FMA chains (FMA latency 4, so fewer chains would stall the loop).
template <DType WT, int R, int C>
void block(const float* X, int64_t ldx, const void* W, int64_t K, float* out) {
  constexpr int64_t es = WT == DType::F32 ? 4 : 2;
  constexpr int U = R * C >= 4 ? 1 : R * C >= 2 ? 2 : 4;
  const char* wbase = static_cast<const char*>(W);
  __m512 acc[U][R][C];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) acc[u][r][c] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 * U <= K; k += 16 * U) {
    for (int u = 0; u < U; ++u) {
      __m512 w[R];
      for (int r = 0; r < R; ++r) w[r] = load_w<WT>(wbase + r * K * es, k + 16 * u);
      for (int c = 0; c < C; ++c) {
        const __m512 x = _mm512_loadu_ps(X + c * ldx + k + 16 * u);
        for (int r = 0; r < R; ++r) acc[u][r][c] = _mm512_fmadd_ps(w[r], x, acc[u][r][c]);
      }
    }
  }
  for (; k < K; k += 16) {  // at most U steps left, the last one masked
    const __mmask16 m = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1u);
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w_masked<WT>(wbase + r * K * es, k, m);
    for (int c = 0; c < C; ++c) {
      const __m512 x = _mm512_maskz_loadu_ps(m, X + c * ldx + k);
      for (int r = 0; r < R; ++r) acc[0][r][c] = _mm512_fmadd_ps(w[r], x, acc[0][r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      __m512 s = acc[0][r][c];
      for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][r][c]);
      out[r * C + c] = _mm512_reduce_add_ps(s);
    }
}

// T == 1 with long rows uses 8 rows (one X load feeds 8 rows, 8 FMA chains); T > 1 uses 4 rows × 6 tokens (24 accumulators + 4 weights + 1 activation = 29 zmm).
constexpr int kGemvRows = 8, kGemmRows = 4, kGemmCols = 6;
constexpr int kMaxRows = 8, kMaxCols = 6;
static_assert(kMaxRows * kMaxCols <= detail::kMaxBlockOutputs, "run_tile's output buffer");

template <DType WT, int C, int... Rs>
constexpr std::array<BlockFn, sizeof...(Rs)> row_fns(std::integer_sequence<int, Rs...>) {
  return {&block<WT, Rs + 1, C>...};
}
template <DType WT, int... Cs>
constexpr std::array<std::array<BlockFn, kMaxRows>, sizeof...(Cs)> make_table(std::integer_sequence<int, Cs...>) {
  return {row_fns<WT, Cs + 1>(std::make_integer_sequence<int, kMaxRows>())...};
}

BlockFn pick_block(DType wt, int rows, int cols) {
  static constexpr auto kF32 = make_table<DType::F32>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kBF16 = make_table<DType::BF16>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kF16 = make_table<DType::F16>(std::make_integer_sequence<int, kMaxCols>());
  if (rows < 1 || rows > kMaxRows || cols < 1 || cols > kMaxCols) return nullptr;
  switch (wt) {
    case DType::F32: return kF32[cols - 1][rows - 1];
    case DType::BF16: return kBF16[cols - 1][rows - 1];
    case DType::F16: return kF16[cols - 1][rows - 1];
    default: return nullptr;
  }
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

template <DType WT>
void convert_row(const void* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_w<WT>(src, i));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, load_w_masked<WT>(src, i, m));
  }
}

void convert_avx512(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: return convert_row<DType::F32>(src, dst, n);
    case DType::BF16: return convert_row<DType::BF16>(src, dst, n);
    case DType::F16: return convert_row<DType::F16>(src, dst, n);
    default: return;
  }
}

void dot_rows_avx512(const float* q, const float* rows, int64_t stride, int64_t n, int64_t d, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = dot_avx512(q, rows + j * stride, d);
}

// Keeps up to 128 output lanes in 8 registers while streaming the rows, so each row is read once and
// the output is stored once per chunk instead of once per row.
void weighted_row_sum_avx512(const float* w, const float* rows, int64_t stride, int64_t n, int64_t d, float* out) {
  for (int64_t c = 0; c < d; c += 128) {
    const int64_t width = d - c < 128 ? d - c : 128;
    const int full = int(width / 16);
    const __mmask16 tail = __mmask16((1u << (width % 16)) - 1u);
    __m512 acc[8];
    for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const __m512 wj = _mm512_set1_ps(w[j]);
      const float* r = rows + j * stride + c;
      for (int v = 0; v < full; ++v) acc[v] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(r + 16 * v), acc[v]);
      if (tail) acc[full] = _mm512_fmadd_ps(wj, _mm512_maskz_loadu_ps(tail, r + 16 * full), acc[full]);
    }
    float* o = out + c;
    for (int v = 0; v < full; ++v) _mm512_storeu_ps(o + 16 * v, _mm512_add_ps(_mm512_loadu_ps(o + 16 * v), acc[v]));
    if (tail) {
      _mm512_mask_storeu_ps(o + 16 * full, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, o + 16 * full), acc[full]));
    }
  }
}

constexpr detail::KernelTable kAvx512 = {
    Isa::Avx512, kGemvRows, kGemmRows, kGemmCols, pick_block, dot_avx512, axpy_avx512, convert_avx512,
    dot_rows_avx512, weighted_row_sum_avx512,
};

}  // namespace

namespace detail {
const KernelTable* avx512_kernels() { return &kAvx512; }
}  // namespace detail
}  // namespace glm::cpu

#else  // not an x86 build with these flags: no AVX-512 implementation

namespace glm::cpu::detail {
const KernelTable* avx512_kernels() { return nullptr; }
}  // namespace glm::cpu::detail

#endif
