#include "engine/quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#ifdef GLM_X86
#include <immintrin.h>
#endif

#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "engine/matrix.h"
#include "engine/quantize_gptq.h"

// Bit-exactness with lib/quantize.ts rests on doing the same IEEE float64 operations in the same order.
// Two things would break it: contracting a*b-c into an FMA (the engine is built for baseline x86-64,
// which has no FMA, and this file asks for no -march) and a different log2 (only used on values whose
// log2 is exact or far from an integer: amax/6 with amax a float32).

namespace glm::quant {

namespace {

const double* e4m3_table() {
  static const auto table = [] {
    static double v[256];
    for (int b = 0; b < 256; ++b) v[b] = double(e4m3_to_f32(uint8_t(b)));
    return v;
  }();
  return table;
}

constexpr double kE2m1[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};

// Weight-error-only candidates (the JS reference's), and the wider grid searched with statistics: with a
// weighted objective, clipping a large weight on a quiet channel can pay for a finer step elsewhere.
constexpr double kFp8Shrink[] = {1, 0.95, 0.9};
constexpr int kCalibratedFp8Steps = 11;  // 1.00, 0.99, ..., 0.90

// x rounded to float32 (Math.fround). Through a volatile: GCC 12 at -O2 was seen dropping the
// double(float(x)) round trip when it unrolled the candidate loop (the scale then differs from the
// stored one), so the rounding is forced to happen in memory.
double to_f32(double x) {
  volatile float f = float(x);
  return f;
}

// Nearest E4M3 code of v (ties to even, saturating at ±448, NaN saturates too) and its value: the JS
// reference's e4m3Encode path by path. Branches, not selects: the paths depend on magnitude only, so
// they predict well (the subnormal path is taken for a handful of weights per row at most).
inline uint8_t encode_e4m3(double v, double* value) {
  const double a = std::fabs(v);
  const bool negative = v < 0;
  double mag;
  uint32_t code;
  if (!(a < 464)) {  // 464 is halfway between 448 and the NaN code's 480
    mag = 448, code = 0x7e;
  } else if (a < 0x1p-6) {  // subnormals, step 2^-9; a·512 < 8, rounded half to even by the 2^52 trick
    const double r = (a * 512 + 0x1p52) - 0x1p52;
    mag = r * 0x1p-9, code = uint32_t(r);
  } else {  // round to float32 first, then to 3 mantissa bits (half to even): the reference's two roundings
    const float f = float(a);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b = (b + 0x7ffffu + ((b >> 20) & 1u)) & 0xfff00000u;
    float rounded;
    std::memcpy(&rounded, &b, 4);
    mag = rounded, code = (((b >> 23) - 127u + 7u) << 3) | ((b >> 20) & 7u);
  }
  *value = negative ? -mag : mag;
  return uint8_t(code | (negative ? 0x80u : 0u));
}

// A set of equally long runs of w (one row, or the rows of a 128×128 block) starting at column c0.
struct Region {
  const double* w;
  int64_t stride;   // elements between runs
  int64_t runs;
  int64_t c0, len;  // columns [c0, c0 + len)
};

// Squared (or activation-weighted squared) errors of one candidate scale over n elements of a run, and
// their codes: the per-element part of the search (the sums over elements stay sequential, in the caller).
void fp8_candidate_errors(const double* x, const float* a, int64_t n, double s, uint8_t* codes, double* d2) {
  for (int64_t k = 0; k < n; ++k) {
    double q;
    codes[k] = encode_e4m3(x[k] / s, &q);
    const double d = q * s - x[k];
    d2[k] = a ? double(a[k]) * (d * d) : d * d;
  }
}

#ifdef GLM_X86
// The low halves of four 64-bit lane masks, as four 32-bit lane masks.
__attribute__((target("avx2"))) inline __m128i mask_lanes32(__m256d m) {
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(m), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
}

// fp8_candidate_errors four lanes at a time, for CPUs with AVX2 (chosen at run time): the three paths of
// encode_e4m3 computed for every lane and selected by masks, each the same IEEE operations as the scalar
// one (division, float32 rounding, integer rounding of the float32 bits), so codes and errors are bit for
// bit equal. The target is AVX2 alone, without FMA, so the compiler cannot contract q·s − x.
__attribute__((target("avx2"))) void fp8_candidate_errors_avx2(const double* x, const float* a, int64_t n, double s,
                                                               uint8_t* codes, double* d2) {
  const __m256d vs = _mm256_set1_pd(s), sign = _mm256_set1_pd(-0.0);
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const __m256d vx = _mm256_loadu_pd(x + k);
    const __m256d v = _mm256_div_pd(vx, vs);
    const __m256d av = _mm256_andnot_pd(sign, v);
    const __m256d neg = _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ);
    const __m256d big = _mm256_cmp_pd(av, _mm256_set1_pd(464), _CMP_NLT_UQ);  // also NaN
    const __m256d sub = _mm256_cmp_pd(av, _mm256_set1_pd(0x1p-6), _CMP_LT_OQ);
    const __m256d r = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(av, _mm256_set1_pd(512)), _mm256_set1_pd(0x1p52)), _mm256_set1_pd(0x1p52));
    const __m256d mag_sub = _mm256_mul_pd(r, _mm256_set1_pd(0x1p-9));
    const __m128i code_sub = _mm256_cvttpd_epi32(r);
    __m128i b = _mm_castps_si128(_mm256_cvtpd_ps(av));
    b = _mm_and_si128(_mm_add_epi32(_mm_add_epi32(b, _mm_set1_epi32(0x7ffff)), _mm_and_si128(_mm_srli_epi32(b, 20), _mm_set1_epi32(1))),
                      _mm_set1_epi32(int(0xfff00000u)));
    const __m256d mag_norm = _mm256_cvtps_pd(_mm_castsi128_ps(b));
    const __m128i code_norm = _mm_or_si128(_mm_slli_epi32(_mm_sub_epi32(_mm_srli_epi32(b, 23), _mm_set1_epi32(120)), 3),
                                           _mm_and_si128(_mm_srli_epi32(b, 20), _mm_set1_epi32(7)));
    const __m128i big32 = mask_lanes32(big), sub32 = mask_lanes32(sub), neg32 = mask_lanes32(neg);
    const __m256d mag = _mm256_blendv_pd(_mm256_blendv_pd(mag_norm, mag_sub, sub), _mm256_set1_pd(448), big);
    __m128i code = _mm_blendv_epi8(_mm_blendv_epi8(code_norm, code_sub, sub32), _mm_set1_epi32(0x7e), big32);
    code = _mm_or_si128(code, _mm_and_si128(neg32, _mm_set1_epi32(0x80)));
    const __m256d q = _mm256_xor_pd(mag, _mm256_and_pd(neg, sign));
    const __m256d d = _mm256_sub_pd(_mm256_mul_pd(q, vs), vx);
    __m256d e = _mm256_mul_pd(d, d);
    if (a) e = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + k)), e);
    _mm256_storeu_pd(d2 + k, e);
    const int packed = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(code, code), _mm_setzero_si128()));
    std::memcpy(codes + k, &packed, 4);
  }
  fp8_candidate_errors(x + k, a ? a + k : nullptr, n - k, s, codes + k, d2 + k);
}

#endif

using CandidateErrorsFn = void (*)(const double*, const float*, int64_t, double, uint8_t*, double*);

// The engine's ISA choice (GLM_CPU_ISA=generic selects the scalar loop, which tests compare against).
CandidateErrorsFn candidate_errors_fn() {
#ifdef GLM_X86
  if (cpu::active_isa() != cpu::Isa::Generic) return fp8_candidate_errors_avx2;
#endif
  return fp8_candidate_errors;
}

// Best scale for the region among N candidates (amax/448 times each shrink factor, rounded to float as
// stored); the codes of the winner are written. The per-element work is vectorised per candidate
// (fp8_candidate_errors); each candidate's error is then still summed in the JS reference's element
// order, all N sums advancing together (independent chains), so the comparisons, hence the choice, come
// out the same. `err_out` receives the winner's unweighted squared error when a is null (the JS
// reference's per-row value) and `ref2_out`, if given, the region's Σ w².
template <int N>
float fp8_region(const Region& g, const float* a, const double (&shrink)[N], uint8_t* codes, int64_t code_stride,
                 std::vector<uint8_t>& scratch, double* err_out, double* ref2_out = nullptr) {
  // Four running maxima (exact in any order) so the loop is not one long dependency chain.
  double m0 = 0, m1 = 0, m2 = 0, m3 = 0;
#ifdef GLM_X86
  __m128d v0 = _mm_setzero_pd(), v1 = _mm_setzero_pd();  // weights are finite: maxpd is the exact max
  const __m128d sign = _mm_set1_pd(-0.0);
#endif
  for (int64_t r = 0; r < g.runs; ++r) {
    const double* row = g.w + r * g.stride + g.c0;
    int64_t k = 0;
#ifdef GLM_X86
    for (; k + 4 <= g.len; k += 4) {
      v0 = _mm_max_pd(v0, _mm_andnot_pd(sign, _mm_loadu_pd(row + k)));
      v1 = _mm_max_pd(v1, _mm_andnot_pd(sign, _mm_loadu_pd(row + k + 2)));
    }
#endif
    for (; k + 4 <= g.len; k += 4) {
      m0 = std::max(m0, std::fabs(row[k])), m1 = std::max(m1, std::fabs(row[k + 1]));
      m2 = std::max(m2, std::fabs(row[k + 2])), m3 = std::max(m3, std::fabs(row[k + 3]));
    }
    for (; k < g.len; ++k) m0 = std::max(m0, std::fabs(row[k]));
  }
#ifdef GLM_X86
  const __m128d v = _mm_max_pd(v0, v1);
  m1 = std::max(m1, std::max(_mm_cvtsd_f64(v), _mm_cvtsd_f64(_mm_unpackhi_pd(v, v))));
#endif
  const double amax = std::max(std::max(m0, m1), std::max(m2, m3));
  *err_out = 0;
  if (ref2_out) *ref2_out = 0;
  if (amax == 0) return 0.0f;  // codes stay 0; scale 0 is valid (finite, >= 0)
  double s[N], err[N];
  for (int i = 0; i < N; ++i) s[i] = to_f32((amax / 448) * shrink[i]), err[i] = 0;
  const size_t cells = size_t(g.runs * g.len);
  scratch.resize(size_t(N) * cells);
  constexpr int64_t kChunk = 64;
  double d2[N][kChunk];
  const CandidateErrorsFn candidate_errors = candidate_errors_fn();
  double ref2 = 0;
  size_t idx = 0;
  for (int64_t r = 0; r < g.runs; ++r) {
    const double* row = g.w + r * g.stride + g.c0;
    const float* ar = a ? a + g.c0 : nullptr;
    for (int64_t k0 = 0; k0 < g.len; k0 += kChunk) {
      const int64_t n = std::min(kChunk, g.len - k0);
      for (int i = 0; i < N; ++i) candidate_errors(row + k0, ar ? ar + k0 : nullptr, n, s[i], scratch.data() + size_t(i) * cells + idx, d2[i]);
      for (int64_t k = 0; k < n; ++k) {
        for (int i = 0; i < N; ++i) err[i] += d2[i][k];
        if (ref2_out) ref2 += row[k0 + k] * row[k0 + k];
      }
      idx += size_t(n);
    }
  }
  if (ref2_out) *ref2_out = ref2;
  double best_s = amax / 448, best_err = std::numeric_limits<double>::infinity();
  int best = -1;
  for (int i = 0; i < N; ++i) {
    if (err[i] < best_err) best_err = err[i], best_s = s[i], best = i;
  }
  if (best < 0) {  // no finite error (cannot happen for finite weights): encode with the max-based scale
    for (int64_t r = 0; r < g.runs; ++r)
      for (int64_t k = 0; k < g.len; ++k) codes[r * code_stride + g.c0 + k] = e4m3_encode(g.w[r * g.stride + g.c0 + k] / best_s);
    return float(best_s);
  }
  const uint8_t* win = scratch.data() + size_t(best) * cells;
  for (int64_t r = 0; r < g.runs; ++r) std::memcpy(codes + r * code_stride + g.c0, win + r * g.len, size_t(g.len));
  *err_out = best_err;
  return float(best_s);
}

constexpr double kCalibratedShrink[kCalibratedFp8Steps] = {1.00, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.90};

float fp8_best(const Region& g, const float* a, uint8_t* codes, int64_t code_stride, std::vector<uint8_t>& scratch, double* err,
               double* ref2 = nullptr) {
  return a ? fp8_region(g, a, kCalibratedShrink, codes, code_stride, scratch, err, ref2)
           : fp8_region(g, a, kFp8Shrink, codes, code_stride, scratch, err, ref2);
}

void put_f32(std::vector<uint8_t>& bytes, int64_t i, float v) { std::memcpy(bytes.data() + 4 * i, &v, 4); }

// The error sums of one row or block (w_q − w, after its codes and scale(s) are written).
struct RowErr {
  double err2 = 0, ref2 = 0, werr2 = 0, wref2 = 0;
};

void parallel_rows(cpu::ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn);
  else fn(0, n);
}

// Weight-error-only rows/blocks report the search's own error (the JS reference's number); with
// statistics the unweighted and weighted sums are taken again from the decoded values.
template <class Dequant>
RowErr unit_error(const Region& g, const float* a, double search_err, Dequant dq) {
  RowErr e;
  for (int64_t r = 0; r < g.runs; ++r) {
    const double* row = g.w + r * g.stride + g.c0;
    for (int64_t k = 0; k < g.len; ++k) {
      const double x = row[k];
      e.ref2 += x * x;
      if (!a) continue;
      const double d = dq(r, g.c0 + k) - x, ac = double(a[g.c0 + k]);
      e.err2 += d * d;
      e.werr2 += ac * (d * d);
      e.wref2 += ac * (x * x);
    }
  }
  if (!a) e.err2 = e.werr2 = search_err, e.wref2 = e.ref2;
  return e;
}

// Where the FP8 quantizers read rows: rows(r0, n, buf) returns rows [r0, r0 + n) with stride cols, either
// straight from a decoded matrix or decoded into buf (then the float64 matrix never exists whole), or
// null after recording a non-finite weight.
using RowSource = std::function<const double*(int64_t r0, int64_t n, std::vector<double>& buf)>;

void quantize_fp8_channel(const RowSource& rows_at, int64_t rows, int64_t cols, const float* a, cpu::ThreadPool* pool,
                          QuantizedMatrix* out, std::vector<RowErr>& errs) {
  out->data.assign(size_t(rows * cols), 0);
  out->scales.assign(size_t(rows) * 4, 0);
  parallel_rows(pool, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    const double* tab = e4m3_table();
    std::vector<uint8_t> scratch;
    std::vector<double> buf;
    for (int64_t r = r0; r < r1; ++r) {
      const double* row = rows_at(r, 1, buf);
      if (!row) return;
      const Region g{row, cols, 1, 0, cols};
      uint8_t* codes = out->data.data() + r * cols;
      double err = 0, ref2 = 0;
      const float s = fp8_best(g, a, codes, cols, scratch, &err, a ? nullptr : &ref2);
      put_f32(out->scales, r, s);
      errs[size_t(r)] = a ? unit_error(g, a, err, [&](int64_t, int64_t c) { return tab[codes[c]] * double(s); }) : RowErr{err, ref2, err, ref2};
    }
  });
}

// Threads take whole 128-row panels (every block of a panel reads the same rows).
void quantize_fp8_block(const RowSource& rows_at, int64_t rows, int64_t cols, const float* a, cpu::ThreadPool* pool,
                        QuantizedMatrix* out, std::vector<RowErr>& errs) {
  const int64_t B = kFp8BlockSize, br = (rows + B - 1) / B, bc = (cols + B - 1) / B;
  out->data.assign(size_t(rows * cols), 0);
  out->scales.assign(size_t(br * bc) * 4, 0);
  errs.assign(size_t(br * bc), RowErr());  // one entry per block, summed in block order (the JS order)
  parallel_rows(pool, br, 1, [&](int64_t i0, int64_t i1) {
    const double* tab = e4m3_table();
    std::vector<uint8_t> scratch;
    std::vector<double> buf;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r0 = i * B, nr = std::min(B, rows - r0);
      const double* panel = rows_at(r0, nr, buf);
      if (!panel) return;
      for (int64_t j = 0; j < bc; ++j) {
        const int64_t b = i * bc + j, c0 = j * B;
        const Region g{panel, cols, nr, c0, std::min(B, cols - c0)};
        uint8_t* codes = out->data.data() + r0 * cols;
        double err = 0, ref2 = 0;
        const float s = fp8_best(g, a, codes, cols, scratch, &err, a ? nullptr : &ref2);
        put_f32(out->scales, b, s);
        errs[size_t(b)] = a ? unit_error(g, a, err, [&](int64_t r, int64_t c) { return tab[codes[r * cols + c]] * double(s); }) : RowErr{err, ref2, err, ref2};
      }
    }
  });
}

// E8M0 code of the group's scale: the round-up exponent (never clips) and one below it (clips the
// largest values to 6·2^e but halves the step of the rest), or with statistics also two below.
uint8_t mxfp4_group(const double* w, int64_t n, const float* a, double* err_out) {
  double amax = 0;
  for (int64_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(w[k]));
  // ceil(log2(amax / 6)) from the binary exponent: amax is a float32 (or an FP8 value times a float32
  // scale), so amax/6 is either a power of two or at least 2^-30 away from one, where the JS
  // reference's log2 cannot round onto the integer either.
  int e0 = -127;
  if (amax > 0) {
    int e;
    const double m = std::frexp(amax / 6, &e);  // amax/6 = m·2^e, m in [0.5, 1)
    e0 = m == 0.5 ? e - 1 : e;
  }
  int best_code = 0;
  double best_err = std::numeric_limits<double>::infinity(), best_plain = 0;
  const int candidates = a ? 3 : 2;
  for (int i = 0; i < candidates; ++i) {
    const int code = std::min(254, std::max(0, e0 - i + 127));
    // Division by a power of two is exact as a multiplication by its inverse (no under/overflow here).
    const double s = std::ldexp(1.0, code - 127), inv = std::ldexp(1.0, 127 - code);
    double err = 0, plain = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double d = kE2m1[e2m1_encode(w[k] * inv)] * s - w[k];
      err += a ? double(a[k]) * (d * d) : d * d;
      plain += d * d;
    }
    if (err < best_err) best_err = err, best_code = code, best_plain = plain;
  }
  *err_out = best_plain;
  return uint8_t(best_code);
}

void quantize_mxfp4(const double* w, int64_t rows, int64_t cols, const float* a, cpu::ThreadPool* pool,
                    QuantizedMatrix* out, std::vector<RowErr>& errs) {
  const int64_t G = kMxfp4Group, groups = (cols + G - 1) / G;
  out->data.assign(size_t(rows * groups * 16), 0);
  out->scales.assign(size_t(rows * groups), 0);
  parallel_rows(pool, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    std::vector<double> deq(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const double* row = w + r * cols;
      double err2 = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * G, n = std::min(G, cols - k0);
        double group_err = 0;
        const uint8_t code = mxfp4_group(row + k0, n, a ? a + k0 : nullptr, &group_err);
        err2 += group_err;
        const double s = std::ldexp(1.0, int(code) - 127), inv = std::ldexp(1.0, 127 - int(code));
        uint8_t codes[32] = {0};
        for (int64_t k = 0; k < n; ++k) {
          codes[k] = e2m1_encode(row[k0 + k] * inv);
          deq[size_t(k0 + k)] = kE2m1[codes[k]] * s;
        }
        uint8_t* blk = out->data.data() + (r * groups + g) * 16;
        for (int j = 0; j < 16; ++j) blk[j] = uint8_t(codes[2 * j] | (codes[2 * j + 1] << 4));  // low nibble first
        out->scales[size_t(r * groups + g)] = code;
      }
      const Region whole{row, cols, 1, 0, cols};
      errs[size_t(r)] = unit_error(whole, a, err2, [&](int64_t, int64_t c) { return deq[size_t(c)]; });
    }
  });
}

}  // namespace

uint8_t e4m3_encode(double v) {
  double value;
  return encode_e4m3(v, &value);
}

uint8_t e2m1_encode(double v) {
  // The thresholds (midpoints between neighbouring values; ties to the even code: <= at 0.25, 1.25,
  // 2.5, 5 and < at 0.75, 1.75, 3.5) counted without branches: random weights made a chain of
  // comparisons mispredict about every other element. NaN would give code 0 here and 7 in the JS
  // reference; weights are checked finite before they get here.
  const double a = std::fabs(v);
  const int c = int(a > 0.25) + int(a >= 0.75) + int(a > 1.25) + int(a >= 1.75) + int(a > 2.5) + int(a >= 3.5) + int(a > 5);
  return uint8_t(v < 0 ? c | 8 : c);
}

namespace {

Status check_input(size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme, const float* in_scales,
                   size_t n_in_scales) {
  if (rows <= 0 || cols <= 0 || rows > (int64_t(1) << 40) / cols) {
    return Status::error(ErrorCode::InvalidParam, "quantize: bad matrix shape");
  }
  const int64_t n = rows * cols;
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::F8_E4M3) {
    return Status::error(ErrorCode::UnsupportedFormat, "quantize: the weight dtype must be F32, BF16, F16 or F8_E4M3");
  }
  if (n_bytes != size_t(n) * size_t(dtype_bits(dtype) / 8)) return Status::error(ErrorCode::ModelFormat, "quantize: weight byte count does not match its shape");
  if (dtype == DType::F8_E4M3) {
    const int64_t B = kFp8BlockSize;
    const size_t want = scheme == InputScheme::Fp8Channel ? size_t(rows)
                      : scheme == InputScheme::Fp8Block   ? size_t(((rows + B - 1) / B) * ((cols + B - 1) / B))
                                                          : 0;
    if (scheme == InputScheme::None || !in_scales || n_in_scales != want) {
      return Status::error(ErrorCode::ModelFormat, "quantize: an F8_E4M3 weight needs its scales in the input's layout");
    }
  }
  return Status::ok();
}

// Rows [r0, r0 + n) of the stored weight as float64 at dst (stride cols). Records the first non-finite
// weight's element index in *bad (first found, by any thread) and returns false if there is one.
// One loop per dtype, so the element loop has no switch in it; the finiteness test is on the stored bits
// (an all-ones exponent), which vectorises where a test on the doubles would not.
bool decode_rows(const uint8_t* bytes, DType dtype, int64_t cols, InputScheme scheme, const float* in_scales, int64_t r0,
                 int64_t n, double* dst, std::atomic<int64_t>* bad) {
  const int64_t first = r0 * cols, count = n * cols;
  switch (dtype) {
    case DType::F32: {
      uint32_t special = 0;  // any all-ones exponent (infinity or NaN)
      for (int64_t i = 0; i < count; ++i) {
        uint32_t u;
        std::memcpy(&u, bytes + 4 * (first + i), 4);
        special |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
        float f;
        std::memcpy(&f, &u, 4);
        dst[i] = f;
      }
      if (!special) return true;
      break;
    }
    case DType::BF16: {
      uint32_t special = 0;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * (first + i), 2);
        special |= uint32_t((h & 0x7f80u) == 0x7f80u);
        dst[i] = bf16_to_f32(h);
      }
      if (!special) return true;
      break;
    }
    case DType::F16: {
      uint32_t special = 0;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * (first + i), 2);
        special |= uint32_t((h & 0x7c00u) == 0x7c00u);
        dst[i] = f16_to_f32(h);
      }
      if (!special) return true;
      break;
    }
    default: {
      const double* tab = e4m3_table();
      const int64_t bc = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
      int all_finite = 1;
      for (int64_t r = r0; r < r0 + n; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const float s = scheme == InputScheme::Fp8Channel ? in_scales[r] : in_scales[(r / kFp8BlockSize) * bc + c / kFp8BlockSize];
          const double v = tab[bytes[r * cols + c]] * double(s);  // exact in float64 (4 + 24 significant bits)
          all_finite &= int(std::isfinite(v));
          dst[(r - r0) * cols + c] = v;
        }
      }
      if (all_finite) return true;
    }
  }
  for (int64_t i = 0; i < count; ++i) {
    if (std::isfinite(dst[i])) continue;
    int64_t expected = -1;
    bad->compare_exchange_strong(expected, first + i);
    break;
  }
  return false;
}

Status non_finite(int64_t at) {
  return Status::error(ErrorCode::Numerical, "quantize: non-finite weight at element " + std::to_string(at));
}

}  // namespace

Status decode_weight(const uint8_t* bytes, size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme,
                     const float* in_scales, size_t n_in_scales, cpu::ThreadPool* pool, std::vector<double>* out) {
  GLM_TRY(check_input(n_bytes, dtype, rows, cols, scheme, in_scales, n_in_scales));
  // Only ever grown: the caller keeps one buffer for a whole checkpoint, because first-touching fresh
  // pages costs more than the quantization itself on some hosts (~3 GB/s measured in a sandbox).
  if (out->size() < size_t(rows * cols)) out->resize(size_t(rows * cols));
  double* w = out->data();
  std::atomic<int64_t> bad{-1};
  parallel_rows(pool, rows, std::max<int64_t>(1, 65536 / cols), [&](int64_t r0, int64_t r1) {
    decode_rows(bytes, dtype, cols, scheme, in_scales, r0, r1 - r0, w + r0 * cols, &bad);
  });
  if (bad.load() >= 0) return non_finite(bad.load());
  return Status::ok();
}

namespace {

RowSource decoded_rows(const double* w, int64_t cols) {
  return [w, cols](int64_t r0, int64_t, std::vector<double>&) { return w + r0 * cols; };
}

Status check_channel_weight(const float* a, int64_t cols) {
  for (int64_t c = 0; a && c < cols; ++c) {
    if (!(a[c] >= 0) || !std::isfinite(a[c])) {
      return Status::error(ErrorCode::InvalidParam, "quantize: activation statistic of channel " + std::to_string(c) + " is not a finite value >= 0");
    }
  }
  return Status::ok();
}

void sum_errors(const std::vector<RowErr>& errs, QuantizedMatrix* out) {
  // Summed in row (block) order, so the totals do not depend on the thread count.
  out->err2 = out->ref2 = out->werr2 = out->wref2 = 0;
  for (const RowErr& e : errs) out->err2 += e.err2, out->ref2 += e.ref2, out->werr2 += e.werr2, out->wref2 += e.wref2;
}

}  // namespace

Status quantize_input(const uint8_t* bytes, size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme,
                      const float* in_scales, size_t n_in_scales, const QuantizeParams& p, cpu::ThreadPool* pool,
                      std::vector<double>* scratch, QuantizedMatrix* out) {
  if (p.target == Target::Mxfp4 || p.covariance) {
    GLM_TRY(decode_weight(bytes, n_bytes, dtype, rows, cols, scheme, in_scales, n_in_scales, pool, scratch));
    return quantize_matrix(scratch->data(), rows, cols, p, pool, out);
  }
  GLM_TRY(check_input(n_bytes, dtype, rows, cols, scheme, in_scales, n_in_scales));
  GLM_TRY(check_channel_weight(p.channel_weight, cols));
  // FP8 rows and blocks only ever read their own rows: each thread decodes the rows it quantizes into a
  // buffer that stays in cache, instead of the whole matrix going out to memory as float64 and back.
  std::atomic<int64_t> bad{-1};
  const RowSource rows_at = [&](int64_t r0, int64_t n, std::vector<double>& buf) -> const double* {
    if (buf.size() < size_t(n * cols)) buf.resize(size_t(n * cols));
    return decode_rows(bytes, dtype, cols, scheme, in_scales, r0, n, buf.data(), &bad) ? buf.data() : nullptr;
  };
  std::vector<RowErr> errs(static_cast<size_t>(rows));
  if (p.target == Target::Fp8Channel) quantize_fp8_channel(rows_at, rows, cols, p.channel_weight, pool, out, errs);
  else quantize_fp8_block(rows_at, rows, cols, p.channel_weight, pool, out, errs);
  if (bad.load() >= 0) return non_finite(bad.load());
  sum_errors(errs, out);
  return Status::ok();
}

Status quantize_matrix(const double* w, int64_t rows, int64_t cols, const QuantizeParams& p, cpu::ThreadPool* pool,
                       QuantizedMatrix* out) {
  if (rows <= 0 || cols <= 0) return Status::error(ErrorCode::InvalidParam, "quantize: empty matrix");
  const float* a = p.channel_weight;
  GLM_TRY(check_channel_weight(a, cols));
  if (p.covariance) {
    if (!a) return Status::error(ErrorCode::InvalidParam, "quantize: a covariance needs the channel statistics too");
    return quantize_gptq(w, rows, cols, p, pool, out);
  }
  std::vector<RowErr> errs(static_cast<size_t>(rows));
  switch (p.target) {
    case Target::Fp8Channel: quantize_fp8_channel(decoded_rows(w, cols), rows, cols, a, pool, out, errs); break;
    case Target::Fp8Block: quantize_fp8_block(decoded_rows(w, cols), rows, cols, a, pool, out, errs); break;
    case Target::Mxfp4: quantize_mxfp4(w, rows, cols, a, pool, out, errs); break;
  }
  sum_errors(errs, out);
  return Status::ok();
}

}  // namespace glm::quant
