// AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c; only called after cpuid says the CPU has
// all three). Weights are widened to fp32 in registers: BF16 by zero-extending to 32 bits and shifting
// left 16 (exact), F16 with vcvtph2ps (exact, including subnormals). K tails (< 8 elements) go through
// small zero-padded copies / masked loads, so nothing past the end of a row is read.
#include "cpu/kernels.h"

#if defined(GLM_X86) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <array>
#include <cmath>
#include <cstring>
#include <utility>

namespace glm::cpu {
namespace {

using detail::BlockFn;
using detail::QBlockFn;

// Lane mask for the first n (0..8) lanes, for vmaskmovps.
inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 E4M3 codes (16-bit lanes) -> fp32 exactly, through F16 as in the AVX-512 twin (fields moved into an
// F16, vcvtph2ps, exact ×256; NaN codes become NaN).
inline __m256 e4m3x8_to_f32(__m128i b) {
  const __m128i mag = _mm_and_si128(b, _mm_set1_epi16(0x7f));
  __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8), _mm_slli_epi16(mag, 7));
  h = _mm_or_si128(h, _mm_and_si128(_mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7f)), _mm_set1_epi16(0x7c00)));
  return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

template <DType WT>
inline __m256 widen8(__m128i h) {
  if constexpr (WT == DType::BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  else return _mm256_cvtph_ps(h);
}

// 8 consecutive weights from element k as fp32.
template <DType WT>
inline __m256 load_w(const void* w, int64_t k) {
  if constexpr (WT == DType::F8_E4M3) {
    return e4m3x8_to_f32(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(w) + k))));
  } else if constexpr (WT == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + k);
  } else {
    return widen8<WT>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k)));
  }
}
// The first n (< 8) weights from element k, zeros in the other lanes.
template <DType WT>
inline __m256 load_w_partial(const void* w, int64_t k, int64_t n) {
  if constexpr (WT == DType::F8_E4M3) {
    uint8_t buf[16] = {};
    std::memcpy(buf, static_cast<const uint8_t*>(w) + k, size_t(n));
    return e4m3x8_to_f32(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(buf))));
  } else if constexpr (WT == DType::F32) {
    return _mm256_maskload_ps(static_cast<const float*>(w) + k, first_lanes(n));
  } else {
    uint16_t buf[8] = {};
    std::memcpy(buf, static_cast<const uint16_t*>(w) + k, size_t(n) * 2);
    return widen8<WT>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(buf)));
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R weight rows × C tokens, one 8-lane accumulator each (R*C + R + 1 registers of 16). Every output is
// one FMA chain over K in the same order whatever R and C are (batch invariance; see the AVX-512 twin),
// so small blocks do not unroll K into extra chains.
template <DType WT, int R, int C>
void block(const float* X, int64_t ldx, const void* W, int64_t K, float* out) {
  constexpr int64_t es = WT == DType::F32 ? 4 : WT == DType::F8_E4M3 ? 1 : 2;
  const char* wbase = static_cast<const char*>(W);
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w<WT>(wbase + r * K * es, k);
    for (int c = 0; c < C; ++c) {
      const __m256 x = _mm256_loadu_ps(X + c * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(w[r], x, acc[r][c]);
    }
  }
  if (k < K) {
    const int64_t n = K - k;
    const __m256i m = first_lanes(n);
    __m256 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w_partial<WT>(wbase + r * K * es, k, n);
    for (int c = 0; c < C; ++c) {
      const __m256 x = _mm256_maskload_ps(X + c * ldx + k, m);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(w[r], x, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = hsum(acc[r][c]);
}

// Group-scaled formats (kernels.h QBlockFn), 8 lanes at a time; see the AVX-512 twin for the scheme.
// MXFP4 here: vpermps (8-entry) looks up |value| × 2^(e-127) from the code's low 3 bits, and the code's
// bit 3 is moved to the fp32 sign bit.
template <Quant Q, int R, int C>
void qblock(const float* X, int64_t ldx, const uint8_t* W, int64_t row_bytes, const void* const* row_scales,
            int64_t K, float* out) {
  constexpr int G = Q == Quant::Fp8Block ? int(kFp8BlockSize) : int(kMxfp4Group);
  constexpr int GB = Q == Quant::Fp8Block ? G : G / 2;
  constexpr int V = G / 8;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const __m256 mags = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  int64_t g = 0;
  for (int64_t k0 = 0; k0 < K; k0 += G, ++g) {
    __m256 s[R];
    for (int r = 0; r < R; ++r) {
      if constexpr (Q == Quant::Fp8Block) s[r] = _mm256_set1_ps(static_cast<const float*>(row_scales[r])[g]);
      else s[r] = _mm256_mul_ps(mags, _mm256_set1_ps(e8m0_to_f32(static_cast<const uint8_t*>(row_scales[r])[g])));
    }
    __m128i codes[R][2];  // MXFP4: the group's 32 codes, one per byte, in element order
    if constexpr (Q == Quant::Mxfp4) {
      for (int r = 0; r < R; ++r) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(W + r * row_bytes + g * GB));
        const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
        codes[r][0] = _mm_unpacklo_epi8(lo, hi);
        codes[r][1] = _mm_unpackhi_epi8(lo, hi);
      }
    }
    for (int v = 0; v < V; ++v) {
      const int64_t left = K - k0 - 8 * v;
      if (left <= 0) break;
      __m256 w[R];
      for (int r = 0; r < R; ++r) {
        if constexpr (Q == Quant::Fp8Block) {
          const uint8_t* p = W + r * row_bytes + k0 + 8 * v;
          __m128i bytes;
          if (left >= 8) {
            bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
          } else {
            uint8_t buf[16] = {};
            std::memcpy(buf, p, size_t(left));
            bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(buf));
          }
          w[r] = _mm256_mul_ps(e4m3x8_to_f32(_mm_cvtepu8_epi16(bytes)), s[r]);
        } else {
          const __m128i c8 = (v & 1) ? _mm_srli_si128(codes[r][v >> 1], 8) : codes[r][v >> 1];
          const __m256i idx = _mm256_cvtepu8_epi32(c8);
          const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(idx, _mm256_set1_epi32(8)), 28);
          w[r] = _mm256_xor_ps(_mm256_permutevar8x32_ps(s[r], idx), _mm256_castsi256_ps(sign));
        }
      }
      const __m256i m = first_lanes(left);
      for (int c = 0; c < C; ++c) {
        const float* x = X + c * ldx + k0 + 8 * v;
        const __m256 xv = left >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, m);
        for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(w[r], xv, acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = hsum(acc[r][c]);
}

// T == 1 with long rows: 8 rows (one X load feeds 8 rows). T > 1: 3 rows × 4 tokens (12 accumulators +
// 3 weights + 1 activation = all 16 ymm registers).
constexpr int kGemvRows = 8, kGemmRows = 3, kGemmCols = 4;
constexpr int kMaxRows = 8, kMaxCols = 4;
static_assert(kMaxRows * kMaxCols <= detail::kMaxBlockOutputs, "run_tile's output buffer");

template <DType WT, int C, int... Rs>
constexpr std::array<BlockFn, sizeof...(Rs)> row_fns(std::integer_sequence<int, Rs...>) {
  return {&block<WT, Rs + 1, C>...};
}
template <DType WT, int... Cs>
constexpr std::array<std::array<BlockFn, kMaxRows>, sizeof...(Cs)> make_table(std::integer_sequence<int, Cs...>) {
  return {row_fns<WT, Cs + 1>(std::make_integer_sequence<int, kMaxRows>())...};
}

template <Quant Q, int C, int... Rs>
constexpr std::array<QBlockFn, sizeof...(Rs)> qrow_fns(std::integer_sequence<int, Rs...>) {
  return {&qblock<Q, Rs + 1, C>...};
}
template <Quant Q, int... Cs>
constexpr std::array<std::array<QBlockFn, kMaxRows>, sizeof...(Cs)> make_qtable(std::integer_sequence<int, Cs...>) {
  return {qrow_fns<Q, Cs + 1>(std::make_integer_sequence<int, kMaxRows>())...};
}

QBlockFn pick_qblock(Quant q, int rows, int cols) {
  static constexpr auto kFp8Block = make_qtable<Quant::Fp8Block>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kMxfp4 = make_qtable<Quant::Mxfp4>(std::make_integer_sequence<int, kMaxCols>());
  if (rows < 1 || rows > kMaxRows || cols < 1 || cols > kMaxCols) return nullptr;
  switch (q) {
    case Quant::Fp8Block: return kFp8Block[cols - 1][rows - 1];
    case Quant::Mxfp4: return kMxfp4[cols - 1][rows - 1];
    default: return nullptr;
  }
}

BlockFn pick_block(DType wt, int rows, int cols) {
  static constexpr auto kF8 = make_table<DType::F8_E4M3>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kF32 = make_table<DType::F32>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kBF16 = make_table<DType::BF16>(std::make_integer_sequence<int, kMaxCols>());
  static constexpr auto kF16 = make_table<DType::F16>(std::make_integer_sequence<int, kMaxCols>());
  if (rows < 1 || rows > kMaxRows || cols < 1 || cols > kMaxCols) return nullptr;
  switch (wt) {
    case DType::F32: return kF32[cols - 1][rows - 1];
    case DType::BF16: return kBF16[cols - 1][rows - 1];
    case DType::F16: return kF16[cols - 1][rows - 1];
    case DType::F8_E4M3: return kF8[cols - 1][rows - 1];
    default: return nullptr;
  }
}

float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  if (i < n) {
    const __m256i m = first_lanes(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

template <DType WT>
void convert_row(const void* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_w<WT>(src, i));
  if (i < n) _mm256_maskstore_ps(dst + i, first_lanes(n - i), load_w_partial<WT>(src, i, n - i));
}

void convert_avx2(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: return convert_row<DType::F32>(src, dst, n);
    case DType::BF16: return convert_row<DType::BF16>(src, dst, n);
    case DType::F16: return convert_row<DType::F16>(src, dst, n);
    default: return;
  }
}

// dot_avx2's order of operations over a row of any cached element type (widened in registers).
template <DType RT>
float dot_typed(const float* a, const void* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_w<RT>(b, i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load_w<RT>(b, i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), load_w<RT>(b, i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), load_w<RT>(b, i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_w<RT>(b, i), s0);
  if (i < n) {
    const __m256i m = first_lanes(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), load_w_partial<RT>(b, i, n - i), s1);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

template <DType RT>
void dot_rows_t(const float* q, const void* const* rows, int64_t n, int64_t d, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = RT == DType::F32 ? dot_avx2(q, static_cast<const float*>(rows[j]), d) : dot_typed<RT>(q, rows[j], d);
}

void dot_rows_avx2(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32: return dot_rows_t<DType::F32>(q, rows, n, d, out);
    case DType::BF16: return dot_rows_t<DType::BF16>(q, rows, n, d, out);
    case DType::F8_E4M3: return dot_rows_t<DType::F8_E4M3>(q, rows, n, d, out);
    default: return;
  }
}

// Up to 64 output lanes stay in 8 registers while the rows stream by (see the AVX-512 twin).
template <DType RT>
void weighted_row_sum_t(const float* w, const void* const* rows, int64_t n, int64_t d, float* out) {
  constexpr int64_t es = RT == DType::F32 ? 4 : RT == DType::F8_E4M3 ? 1 : 2;
  for (int64_t c = 0; c < d; c += 64) {
    const int64_t width = d - c < 64 ? d - c : 64;
    const int full = int(width / 8);
    const int64_t rest = width % 8;
    __m256 acc[8];
    for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
    float tail_acc[8] = {};
    float tail_row[8];
    for (int64_t j = 0; j < n; ++j) {
      const __m256 wj = _mm256_set1_ps(w[j]);
      const char* r = static_cast<const char*>(rows[j]) + c * es;
      for (int v = 0; v < full; ++v) acc[v] = _mm256_fmadd_ps(wj, load_w<RT>(r, 8 * v), acc[v]);
      if (rest) {
        _mm256_storeu_ps(tail_row, load_w_partial<RT>(r, 8 * full, rest));
        for (int64_t i = 0; i < rest; ++i) tail_acc[i] = std::fma(w[j], tail_row[i], tail_acc[i]);
      }
    }
    float* o = out + c;
    for (int v = 0; v < full; ++v) _mm256_storeu_ps(o + 8 * v, _mm256_add_ps(_mm256_loadu_ps(o + 8 * v), acc[v]));
    for (int64_t i = 0; i < rest; ++i) o[8 * full + i] += tail_acc[i];
  }
}

void weighted_row_sum_avx2(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32: return weighted_row_sum_t<DType::F32>(w, rows, n, d, out);
    case DType::BF16: return weighted_row_sum_t<DType::BF16>(w, rows, n, d, out);
    case DType::F8_E4M3: return weighted_row_sum_t<DType::F8_E4M3>(w, rows, n, d, out);
    default: return;
  }
}

constexpr detail::KernelTable kAvx2 = {
    Isa::Avx2, kGemvRows, kGemmRows, kGemmCols, pick_block, pick_qblock, dot_avx2, axpy_avx2, convert_avx2,
    dot_rows_avx2, weighted_row_sum_avx2,
};

}  // namespace

namespace detail {
const KernelTable* avx2_kernels() { return &kAvx2; }
}  // namespace detail
}  // namespace glm::cpu

#else  // not an x86 build with these flags: no AVX2 implementation

namespace glm::cpu::detail {
const KernelTable* avx2_kernels() { return nullptr; }
}  // namespace glm::cpu::detail

#endif
