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
using detail::QBlockFn;

// 16 E4M3 codes (as 16-bit lanes) -> fp32, exactly, without touching fp32 subnormals: the code's
// exponent and mantissa fields are moved into an F16's (S.EEEE.MMM -> S.0EEEE.MMM0000000), so the F16
// has the E4M3 value scaled by 2^-8 (bias 15 vs 7; E4M3 subnormals land on F16 subnormals, which
// vcvtph2ps converts exactly), and the exact ×256 restores it. The NaN codes (S.1111.111) get the F16
// exponent all ones, i.e. NaN, instead of ±480.
inline __m512 e4m3x16_to_f32(__m256i b) {
  const __m256i mag = _mm256_and_si256(b, _mm256_set1_epi16(0x7f));
  __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8), _mm256_slli_epi16(mag, 7));
  const __m256i nan = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7f));
  h = _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
  return _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
}

// 16 consecutive weights from element k as fp32; the masked form reads only the lanes in m.
template <DType WT>
inline __m512 load_w(const void* w, int64_t k) {
  if constexpr (WT == DType::F8_E4M3) {
    return e4m3x16_to_f32(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(w) + k))));
  } else if constexpr (WT == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + k);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + k));
    if constexpr (WT == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}
template <DType WT>
inline __m512 load_w_masked(const void* w, int64_t k, __mmask16 m) {
  if constexpr (WT == DType::F8_E4M3) {
    return e4m3x16_to_f32(_mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(m, static_cast<const uint8_t*>(w) + k)));
  } else if constexpr (WT == DType::F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + k);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + k);
    if constexpr (WT == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

// R weight rows × C tokens, one 16-lane accumulator each (R*C + R + 1 registers of 32). Per 16-wide
// step: R weight loads and C activation loads feed R*C FMAs.
// Every output is one FMA chain over K in the same order whatever R and C are, so a row's result does
// not depend on how many other rows share its block or step (batch invariance: a request's tokens are
// the same alone and batched). Small blocks therefore do not unroll K into extra chains; a one-row GEMV
// is latency-bound at 16 FMA lanes per 4 cycles (~8 bytes of BF16 weights per cycle), still above a
// core's share of DRAM bandwidth.
template <DType WT, int R, int C>
void block(const float* X, int64_t ldx, const void* W, int64_t K, float* out) {
  constexpr int64_t es = WT == DType::F32 ? 4 : WT == DType::F8_E4M3 ? 1 : 2;
  const char* wbase = static_cast<const char*>(W);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w<WT>(wbase + r * K * es, k);
    for (int c = 0; c < C; ++c) {
      const __m512 x = _mm512_loadu_ps(X + c * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(w[r], x, acc[r][c]);
    }
  }
  if (k < K) {  // the masked tail
    const __mmask16 m = __mmask16((1u << (K - k)) - 1u);
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w_masked<WT>(wbase + r * K * es, k, m);
    for (int c = 0; c < C; ++c) {
      const __m512 x = _mm512_maskz_loadu_ps(m, X + c * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(w[r], x, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = _mm512_reduce_add_ps(acc[r][c]);
}

// Group-scaled formats (kernels.h QBlockFn). Per group and row the weights are decoded straight into
// registers already multiplied by the group's scale:
//  - FP8 128×128 blocks: e4m3 -> fp32 (above), times the block scale (one fp32 rounding per weight).
//  - MXFP4: the 16 E2M1 values times 2^(e-127) form a 16-entry table in one zmm (exact: 2-bit
//    significands), and vpermps looks up 16 codes at a time. The 16 bytes of a group unpack low nibble
//    first: bytes j -> elements 2j, 2j+1 (spec §10).
// The last group of a row may be partial (K not a multiple of the group): its activations are loaded
// masked (zeros), and weight bytes past the row's K are read only within the row's padded storage.
inline const __m512& e2m1_table() {
  static const __m512 t = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                         -2.0f, -3.0f, -4.0f, -6.0f);
  return t;
}

inline __mmask16 lanes_below(int64_t n) {  // first min(max(n,0),16) lanes
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

template <Quant Q, int R, int C>
void qblock(const float* X, int64_t ldx, const uint8_t* W, int64_t row_bytes, const void* const* row_scales,
            int64_t K, float* out) {
  constexpr int G = Q == Quant::Fp8Block ? int(kFp8BlockSize) : int(kMxfp4Group);
  constexpr int GB = Q == Quant::Fp8Block ? G : G / 2;
  constexpr int V = G / 16;  // 16-lane vectors per group
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const __m512 lut = e2m1_table();
  int64_t g = 0;
  for (int64_t k0 = 0; k0 < K; k0 += G, ++g) {
    const bool full = K - k0 >= G;
    if constexpr (Q == Quant::Fp8Block) {
      // One 16-wide slice of the group at a time (R decoded rows + R scales + R*C accumulators fit).
      __m512 s[R];
      for (int r = 0; r < R; ++r) s[r] = _mm512_set1_ps(static_cast<const float*>(row_scales[r])[g]);
      for (int v = 0; v < V; ++v) {
        const int64_t left = K - k0 - 16 * v;
        if (left <= 0) break;
        const __mmask16 m = lanes_below(left);
        __m512 w[R];
        for (int r = 0; r < R; ++r) {
          const uint8_t* p = W + r * row_bytes + k0 + 16 * v;
          const __m128i bytes = full ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)) : _mm_maskz_loadu_epi8(m, p);
          w[r] = _mm512_mul_ps(e4m3x16_to_f32(_mm256_cvtepu8_epi16(bytes)), s[r]);
        }
        for (int c = 0; c < C; ++c) {
          const float* x = X + c * ldx + k0 + 16 * v;
          const __m512 xv = full ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m, x);
          for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(w[r], xv, acc[r][c]);
        }
      }
    } else {
      __m512 w[R][2];
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = W + r * row_bytes + g * GB;
        const __m512 table = _mm512_mul_ps(lut, _mm512_set1_ps(e8m0_to_f32(static_cast<const uint8_t*>(row_scales[r])[g])));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));  // padded storage: always in bounds
        const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
        w[r][0] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)), table);  // elements 0..15
        w[r][1] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)), table);  // elements 16..31
      }
      for (int c = 0; c < C; ++c) {
        const float* x = X + c * ldx + k0;
        for (int v = 0; v < 2; ++v) {
          const __m512 xv = full ? _mm512_loadu_ps(x + 16 * v) : _mm512_maskz_loadu_ps(lanes_below(K - k0 - 16 * v), x + 16 * v);
          for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(w[r][v], xv, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = _mm512_reduce_add_ps(acc[r][c]);
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

// dot_avx512's order of operations over a row of any cached element type (widened in registers).
template <DType RT>
float dot_typed(const float* a, const void* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load_w<RT>(b, i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load_w<RT>(b, i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), load_w<RT>(b, i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), load_w<RT>(b, i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load_w<RT>(b, i), s0);
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), load_w_masked<RT>(b, i, m), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

template <DType RT>
void dot_rows_t(const float* q, const void* const* rows, int64_t n, int64_t d, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = RT == DType::F32 ? dot_avx512(q, static_cast<const float*>(rows[j]), d) : dot_typed<RT>(q, rows[j], d);
}

void dot_rows_avx512(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32: return dot_rows_t<DType::F32>(q, rows, n, d, out);
    case DType::BF16: return dot_rows_t<DType::BF16>(q, rows, n, d, out);
    case DType::F8_E4M3: return dot_rows_t<DType::F8_E4M3>(q, rows, n, d, out);
    default: return;
  }
}

// Keeps up to 128 output lanes in 8 registers while streaming the rows, so each row is read once and
// the output is stored once per chunk instead of once per row.
template <DType RT>
void weighted_row_sum_t(const float* w, const void* const* rows, int64_t n, int64_t d, float* out) {
  constexpr int64_t es = RT == DType::F32 ? 4 : RT == DType::F8_E4M3 ? 1 : 2;
  for (int64_t c = 0; c < d; c += 128) {
    const int64_t width = d - c < 128 ? d - c : 128;
    const int full = int(width / 16);
    const __mmask16 tail = __mmask16((1u << (width % 16)) - 1u);
    __m512 acc[8];
    for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const __m512 wj = _mm512_set1_ps(w[j]);
      const char* r = static_cast<const char*>(rows[j]) + c * es;
      for (int v = 0; v < full; ++v) acc[v] = _mm512_fmadd_ps(wj, load_w<RT>(r, 16 * v), acc[v]);
      if (tail) acc[full] = _mm512_fmadd_ps(wj, load_w_masked<RT>(r, 16 * full, tail), acc[full]);
    }
    float* o = out + c;
    for (int v = 0; v < full; ++v) _mm512_storeu_ps(o + 16 * v, _mm512_add_ps(_mm512_loadu_ps(o + 16 * v), acc[v]));
    if (tail) {
      _mm512_mask_storeu_ps(o + 16 * full, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, o + 16 * full), acc[full]));
    }
  }
}

void weighted_row_sum_avx512(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32: return weighted_row_sum_t<DType::F32>(w, rows, n, d, out);
    case DType::BF16: return weighted_row_sum_t<DType::BF16>(w, rows, n, d, out);
    case DType::F8_E4M3: return weighted_row_sum_t<DType::F8_E4M3>(w, rows, n, d, out);
    default: return;
  }
}

constexpr detail::KernelTable kAvx512 = {
    Isa::Avx512, kGemvRows, kGemmRows, kGemmCols, pick_block, pick_qblock, dot_avx512, axpy_avx512, convert_avx512,
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
