#include "engine/quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "cpu/thread_pool.h"
#include "engine/matrix.h"

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
constexpr int kCalibratedFp8Steps = 21;  // 1.00, 0.98, ..., 0.60

double calibrated_shrink(int i) { return 1.0 - 0.02 * i; }

double round_half_even(double x) {
  const double r = std::round(x);  // JS Math.round for x >= 0 (ties up), computed exactly
  return (r - x == 0.5 && std::fmod(r, 2.0) != 0) ? r - 1 : r;
}

// A set of equally long runs of w (one row, or the rows of a 128×128 block) starting at column c0.
struct Region {
  const double* w;
  int64_t stride;   // elements between runs
  int64_t runs;
  int64_t c0, len;  // columns [c0, c0 + len)
};

// Squared error (weighted by a[c] when given) of encoding the region with scale s; writes codes if asked.
double fp8_error(const Region& g, double s, const float* a, uint8_t* codes, int64_t code_stride) {
  const double* tab = e4m3_table();
  double err = 0;
  for (int64_t r = 0; r < g.runs; ++r) {
    const double* row = g.w + r * g.stride + g.c0;
    for (int64_t k = 0; k < g.len; ++k) {
      const uint8_t c = e4m3_encode(row[k] / s);
      if (codes) codes[r * code_stride + g.c0 + k] = c;
      const double d = tab[c] * s - row[k];
      err += a ? double(a[g.c0 + k]) * (d * d) : d * d;
    }
  }
  return err;
}

// Best scale for the region; codes written for it. Returns the scale (float, as stored) and its error.
float fp8_region(const Region& g, const float* a, uint8_t* codes, int64_t code_stride) {
  double amax = 0;
  for (int64_t r = 0; r < g.runs; ++r) {
    const double* row = g.w + r * g.stride + g.c0;
    for (int64_t k = 0; k < g.len; ++k) amax = std::max(amax, std::fabs(row[k]));
  }
  if (amax == 0) return 0.0f;  // codes stay 0; scale 0 is valid (finite, >= 0)
  double best_s = amax / 448, best_err = std::numeric_limits<double>::infinity();
  const int n = a ? kCalibratedFp8Steps : int(sizeof(kFp8Shrink) / sizeof(kFp8Shrink[0]));
  for (int i = 0; i < n; ++i) {
    const double f = a ? calibrated_shrink(i) : kFp8Shrink[i];
    const double s = double(float((amax / 448) * f));
    const double err = fp8_error(g, s, a, nullptr, 0);
    if (err < best_err) best_err = err, best_s = s;
  }
  fp8_error(g, best_s, nullptr, codes, code_stride);
  return float(best_s);
}

void put_f32(std::vector<uint8_t>& bytes, int64_t i, float v) { std::memcpy(bytes.data() + 4 * i, &v, 4); }

// The error sums of one row (w_q − w over the whole row, after its codes and scale(s) are written).
struct RowErr {
  double err2 = 0, ref2 = 0, werr2 = 0, wref2 = 0;
};

template <class Dequant>
RowErr row_error(const double* w, int64_t cols, const float* a, Dequant dq) {
  RowErr e;
  for (int64_t c = 0; c < cols; ++c) {
    const double d = dq(c) - w[c];
    e.err2 += d * d;
    e.ref2 += w[c] * w[c];
    const double ac = a ? double(a[c]) : 1.0;
    e.werr2 += ac * (d * d);
    e.wref2 += ac * (w[c] * w[c]);
  }
  return e;
}

void parallel_rows(cpu::ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn);
  else fn(0, n);
}

void quantize_fp8_channel(const double* w, int64_t rows, int64_t cols, const float* a, cpu::ThreadPool* pool,
                          QuantizedMatrix* out, std::vector<RowErr>& errs) {
  out->data.assign(size_t(rows * cols), 0);
  out->scales.assign(size_t(rows) * 4, 0);
  parallel_rows(pool, rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    const double* tab = e4m3_table();
    for (int64_t r = r0; r < r1; ++r) {
      const Region g{w + r * cols, cols, 1, 0, cols};
      uint8_t* codes = out->data.data() + r * cols;
      const float s = fp8_region(g, a, codes, cols);
      put_f32(out->scales, r, s);
      errs[size_t(r)] = row_error(w + r * cols, cols, a, [&](int64_t c) { return tab[codes[c]] * double(s); });
    }
  });
}

void quantize_fp8_block(const double* w, int64_t rows, int64_t cols, const float* a, cpu::ThreadPool* pool,
                        QuantizedMatrix* out, std::vector<RowErr>& errs) {
  const int64_t B = kFp8BlockSize, br = (rows + B - 1) / B, bc = (cols + B - 1) / B;
  out->data.assign(size_t(rows * cols), 0);
  out->scales.assign(size_t(br * bc) * 4, 0);
  std::vector<float> scales(size_t(br * bc));
  parallel_rows(pool, br * bc, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i = b / bc, j = b % bc, r0 = i * B, c0 = j * B;
      const Region g{w + r0 * cols, cols, std::min(B, rows - r0), c0, std::min(B, cols - c0)};
      scales[size_t(b)] = fp8_region(g, a, out->data.data() + r0 * cols, cols);
    }
  });
  for (int64_t b = 0; b < br * bc; ++b) put_f32(out->scales, b, scales[size_t(b)]);
  parallel_rows(pool, rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    const double* tab = e4m3_table();
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* codes = out->data.data() + r * cols;
      const float* srow = scales.data() + (r / B) * bc;
      errs[size_t(r)] = row_error(w + r * cols, cols, a, [&](int64_t c) { return tab[codes[c]] * double(srow[c / B]); });
    }
  });
}

// E8M0 code of the group's scale: the round-up exponent (never clips) and one below it (clips the
// largest values to 6·2^e but halves the step of the rest), or with statistics also two below.
uint8_t mxfp4_group(const double* w, int64_t n, const float* a) {
  double amax = 0;
  for (int64_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(w[k]));
  const int e0 = amax > 0 ? int(std::ceil(std::log2(amax / 6))) : -127;
  int best_code = 0;
  double best_err = std::numeric_limits<double>::infinity();
  const int candidates = a ? 3 : 2;
  for (int i = 0; i < candidates; ++i) {
    const int code = std::min(254, std::max(0, e0 - i + 127));
    const double s = std::ldexp(1.0, code - 127);
    double err = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double d = kE2m1[e2m1_encode(w[k] / s)] * s - w[k];
      err += a ? double(a[k]) * (d * d) : d * d;
    }
    if (err < best_err) best_err = err, best_code = code;
  }
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
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * G, n = std::min(G, cols - k0);
        const uint8_t code = mxfp4_group(row + k0, n, a ? a + k0 : nullptr);
        const double s = std::ldexp(1.0, int(code) - 127);
        uint8_t codes[32] = {0};
        for (int64_t k = 0; k < n; ++k) {
          codes[k] = e2m1_encode(row[k0 + k] / s);
          deq[size_t(k0 + k)] = kE2m1[codes[k]] * s;
        }
        uint8_t* blk = out->data.data() + (r * groups + g) * 16;
        for (int j = 0; j < 16; ++j) blk[j] = uint8_t(codes[2 * j] | (codes[2 * j + 1] << 4));  // low nibble first
        out->scales[size_t(r * groups + g)] = code;
      }
      errs[size_t(r)] = row_error(row, cols, a, [&](int64_t c) { return deq[size_t(c)]; });
    }
  });
}

}  // namespace

uint8_t e4m3_encode(double v) {
  const uint8_t sign = v < 0 ? 0x80 : 0;
  const double a = std::fabs(v);
  if (!(a < 464)) return sign | 0x7e;  // 464 is halfway between 448 and the NaN code's 480: saturate (NaN too)
  if (a < 0x1p-6) return uint8_t(sign | int(round_half_even(a * 512)));  // subnormals, step 2^-9
  // Round to float32 first, then to 3 mantissa bits (half to even): the JS reference's two roundings.
  const float f = float(a);
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b = (b + 0x7ffffu + ((b >> 20) & 1u)) & 0xfff00000u;
  const uint32_t e = (b >> 23) - 127 + 7;
  return uint8_t(sign | (e << 3) | ((b >> 20) & 7u));
}

uint8_t e2m1_encode(double v) {
  const double a = std::fabs(v);
  const int c = a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return uint8_t(v < 0 ? c | 8 : c);
}

Status decode_weight(const uint8_t* bytes, size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme,
                     const float* in_scales, size_t n_in_scales, cpu::ThreadPool* pool, std::vector<double>* out) {
  if (rows <= 0 || cols <= 0 || rows > (int64_t(1) << 40) / cols) {
    return Status::error(ErrorCode::InvalidParam, "quantize: bad matrix shape");
  }
  const int64_t n = rows * cols;
  const int eb = dtype_bits(dtype) / 8;
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::F8_E4M3) {
    return Status::error(ErrorCode::UnsupportedFormat, "quantize: the weight dtype must be F32, BF16, F16 or F8_E4M3");
  }
  if (n_bytes != size_t(n) * size_t(eb)) return Status::error(ErrorCode::ModelFormat, "quantize: weight byte count does not match its shape");
  if (dtype == DType::F8_E4M3) {
    const int64_t B = kFp8BlockSize;
    const size_t want = scheme == InputScheme::Fp8Channel ? size_t(rows)
                      : scheme == InputScheme::Fp8Block   ? size_t(((rows + B - 1) / B) * ((cols + B - 1) / B))
                                                          : 0;
    if (scheme == InputScheme::None || !in_scales || n_in_scales != want) {
      return Status::error(ErrorCode::ModelFormat, "quantize: an F8_E4M3 weight needs its scales in the input's layout");
    }
  }
  out->resize(size_t(n));
  double* w = out->data();
  std::atomic<int64_t> bad{-1};
  parallel_rows(pool, rows, std::max<int64_t>(1, 65536 / cols), [&](int64_t r0, int64_t r1) {
    const double* tab = e4m3_table();
    const int64_t bc = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = r * cols + c;
        double v;
        switch (dtype) {
          case DType::F32: { float f; std::memcpy(&f, bytes + 4 * i, 4); v = f; break; }
          case DType::BF16: { uint16_t h; std::memcpy(&h, bytes + 2 * i, 2); v = bf16_to_f32(h); break; }
          case DType::F16: { uint16_t h; std::memcpy(&h, bytes + 2 * i, 2); v = f16_to_f32(h); break; }
          default: {
            const float s = scheme == InputScheme::Fp8Channel ? in_scales[r] : in_scales[(r / kFp8BlockSize) * bc + c / kFp8BlockSize];
            v = tab[bytes[i]] * double(s);  // exact in float64 (4 + 24 significant bits)
          }
        }
        if (!std::isfinite(v)) {
          int64_t expected = -1;
          bad.compare_exchange_strong(expected, i);
        }
        w[i] = v;
      }
    }
  });
  if (bad.load() >= 0) {
    return Status::error(ErrorCode::Numerical, "quantize: non-finite weight at element " + std::to_string(bad.load()));
  }
  return Status::ok();
}

Status quantize_matrix(const double* w, int64_t rows, int64_t cols, const QuantizeParams& p, cpu::ThreadPool* pool,
                       QuantizedMatrix* out) {
  if (rows <= 0 || cols <= 0) return Status::error(ErrorCode::InvalidParam, "quantize: empty matrix");
  const float* a = p.channel_weight;
  if (a) {
    for (int64_t c = 0; c < cols; ++c) {
      if (!(a[c] >= 0) || !std::isfinite(a[c])) {
        return Status::error(ErrorCode::InvalidParam, "quantize: activation statistic of channel " + std::to_string(c) + " is not a finite value >= 0");
      }
    }
  }
  std::vector<RowErr> errs(static_cast<size_t>(rows));
  switch (p.target) {
    case Target::Fp8Channel: quantize_fp8_channel(w, rows, cols, a, pool, out, errs); break;
    case Target::Fp8Block: quantize_fp8_block(w, rows, cols, a, pool, out, errs); break;
    case Target::Mxfp4: quantize_mxfp4(w, rows, cols, a, pool, out, errs); break;
  }
  // Summed in row order, so the totals do not depend on the thread count.
  out->err2 = out->ref2 = out->werr2 = out->wref2 = 0;
  for (const RowErr& e : errs) out->err2 += e.err2, out->ref2 += e.ref2, out->werr2 += e.werr2, out->wref2 += e.wref2;
  return Status::ok();
}

}  // namespace glm::quant
