#include "engine/quantize_gptq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "cpu/thread_pool.h"
#include "engine/matrix.h"

namespace glm::quant {

namespace {

constexpr double kE2m1[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};

// In-place lower Cholesky factor of the symmetric n×n matrix m (row-major); false if not positive definite.
bool cholesky(std::vector<double>& m, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = m[size_t(j * n + j)];
    for (int64_t k = 0; k < j; ++k) d -= m[size_t(j * n + k)] * m[size_t(j * n + k)];
    if (!(d > 0)) return false;
    const double l = std::sqrt(d);
    m[size_t(j * n + j)] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double v = m[size_t(i * n + j)];
      for (int64_t k = 0; k < j; ++k) v -= m[size_t(i * n + k)] * m[size_t(j * n + k)];
      m[size_t(i * n + j)] = v / l;
    }
    for (int64_t k = j + 1; k < n; ++k) m[size_t(j * n + k)] = 0;
  }
  return true;
}

// U with H⁻¹ = Uᵀ U (upper triangular), H damped by 1% of its mean diagonal (more if needed): row j of U
// says how an error made at column j is best compensated by the columns after it.
bool feedback_factor(const float* cov, int64_t n, std::vector<double>* u) {
  double mean_diag = 0;
  for (int64_t j = 0; j < n; ++j) mean_diag += cov[j * n + j];
  mean_diag = std::max(mean_diag / double(n), 1e-30);
  // 1% measured best on the default model (0.1%: FP8 KL +30%; 10%: FP8 KL +75%, MXFP4 -3%).
  for (double damp = 0.01; damp <= 10; damp *= 10) {
    std::vector<double> l(size_t(n * n));
    for (int64_t i = 0; i < n * n; ++i) l[size_t(i)] = cov[i];
    for (int64_t j = 0; j < n; ++j) l[size_t(j * n + j)] += damp * mean_diag;
    if (!cholesky(l, n)) continue;
    // L⁻¹ (lower), then H⁻¹ = L⁻ᵀ L⁻¹, then its lower factor M (H⁻¹ = M Mᵀ): U = Mᵀ.
    std::vector<double> li(size_t(n * n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      li[size_t(j * n + j)] = 1 / l[size_t(j * n + j)];
      for (int64_t i = j + 1; i < n; ++i) {
        double v = 0;
        for (int64_t k = j; k < i; ++k) v -= l[size_t(i * n + k)] * li[size_t(k * n + j)];
        li[size_t(i * n + j)] = v / l[size_t(i * n + i)];
      }
    }
    std::vector<double> hinv(size_t(n * n));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j <= i; ++j) {
        double v = 0;
        for (int64_t k = i; k < n; ++k) v += li[size_t(k * n + i)] * li[size_t(k * n + j)];
        hinv[size_t(i * n + j)] = hinv[size_t(j * n + i)] = v;
      }
    }
    if (!cholesky(hinv, n)) continue;
    u->assign(size_t(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) (*u)[size_t(j * n + i)] = hinv[size_t(i * n + j)];
    return true;
  }
  return false;
}

}  // namespace

Status quantize_gptq(const double* w, int64_t rows, int64_t cols, const QuantizeParams& p, cpu::ThreadPool* pool,
                     QuantizedMatrix* out) {
  QuantizeParams plain = p;
  plain.covariance = nullptr;
  // Every scale (and the fallback result) from the calibrated search without feedback: in act order a
  // group's columns are not rounded together, so its scale cannot wait for the feedback's updates.
  GLM_TRY(quantize_matrix(w, rows, cols, plain, pool, out));
  // Act order: columns are rounded by descending input energy (diagonal of E[x xᵀ]), so the columns
  // that matter most are rounded while the most columns remain to absorb their error. The feedback runs
  // on the covariance permuted to that order.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) perm[size_t(j)] = j;
  if (p.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t x, int64_t y) { return p.covariance[x * cols + x] > p.covariance[y * cols + y]; });
  }
  std::vector<float> hp(size_t(cols * cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) hp[size_t(i * cols + j)] = p.covariance[perm[size_t(i)] * cols + perm[size_t(j)]];
  std::vector<double> u;
  if (!feedback_factor(hp.data(), cols, &u)) return Status::ok();

  const float* a = p.channel_weight;
  const int64_t B = kFp8BlockSize, bc = (cols + B - 1) / B, G = kMxfp4Group, groups = (cols + G - 1) / G;
  auto fp8_scale = [&](int64_t r, int64_t c) {
    float s;
    std::memcpy(&s, out->scales.data() + 4 * (p.target == Target::Fp8Channel ? r : (r / B) * bc + c / B), 4);
    return double(s);
  };
  struct Sums { double err2 = 0, ref2 = 0, werr2 = 0, wref2 = 0; };
  std::vector<Sums> sums(static_cast<size_t>(rows));
  const std::function<void(int64_t, int64_t)> run = [&](int64_t r0, int64_t r1) {
    std::vector<double> x(static_cast<size_t>(cols)), deq(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const double* orig = w + r * cols;
      for (int64_t j = 0; j < cols; ++j) x[size_t(j)] = orig[perm[size_t(j)]];  // x in rounding order
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t col = perm[size_t(j)];
        double q;
        if (p.target == Target::Mxfp4) {
          const int64_t g = col / G;
          s = std::ldexp(1.0, int(out->scales[size_t(r * groups + g)]) - 127);
          const uint8_t c = e2m1_encode(x[size_t(j)] / s);
          uint8_t& byte = out->data[size_t((r * groups + g) * 16 + (col % G) / 2)];
          byte = (col % 2) ? uint8_t((byte & 0x0f) | (c << 4)) : uint8_t((byte & 0xf0) | c);
          q = kE2m1[c] * s;
        } else {
          s = fp8_scale(r, col);
          const uint8_t c = s > 0 ? e4m3_encode(x[size_t(j)] / s) : 0;
          out->data[size_t(r * cols + col)] = c;
          q = double(e4m3_to_f32(c)) * s;
        }
        deq[size_t(col)] = q;
        // Push this column's rounding error onto the columns still to come.
        const double e = (x[size_t(j)] - q) / u[size_t(j * cols + j)];
        const double* urow = u.data() + j * cols;
        for (int64_t k = j + 1; k < cols; ++k) x[size_t(k)] -= e * urow[k];
      }
      Sums& t = sums[size_t(r)];
      for (int64_t c = 0; c < cols; ++c) {
        const double d = deq[size_t(c)] - orig[c];
        t.err2 += d * d, t.ref2 += orig[c] * orig[c];
        t.werr2 += double(a[c]) * d * d, t.wref2 += double(a[c]) * orig[c] * orig[c];
      }
    }
  };
  if (pool) pool->parallel_for(rows, 1, run);
  else run(0, rows);
  out->err2 = out->ref2 = out->werr2 = out->wref2 = 0;
  for (const Sums& t : sums) out->err2 += t.err2, out->ref2 += t.ref2, out->werr2 += t.werr2, out->wref2 += t.wref2;
  return Status::ok();
}

}  // namespace glm::quant
