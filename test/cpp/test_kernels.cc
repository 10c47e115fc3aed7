// CPU kernels and thread pool against plain references, for every ISA implementation this CPU runs.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "engine/kv_format.h"
#include "engine/matrix.h"

using glm::DType;
using glm::Matrix;
using glm::Quant;
using glm::bf16_to_f32;
using glm::e4m3_to_f32;
using glm::f32_to_bf16;
using glm::f32_to_e4m3;
using glm::dtype_name;
using namespace glm::cpu;

namespace {

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas{Isa::Generic};
  if (detected_isa() == Isa::Avx2 || detected_isa() == Isa::Avx512) isas.push_back(Isa::Avx2);
  if (detected_isa() == Isa::Avx512) isas.push_back(Isa::Avx512);
  return isas;
}

// Restores the detected ISA when a test ends, whatever it selected.
struct IsaGuard {
  ~IsaGuard() { set_isa_for_testing(detected_isa()); }
};

uint32_t bits_of(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }

// Independent F16 reference (does not share code with dtype.h): value = mantissa * 2^(exponent).
float f16_reference(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 0) v = std::ldexp(double(mant), -24);
  else if (exp == 31) v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(double(1024 + mant), exp - 25);
  return float(sign ? -v : v);
}

uint16_t f32_to_f16_bits(float f) {  // round-to-nearest for test data (normal range only)
  if (f == 0.0f) return 0;
  int e;
  const double m = std::frexp(std::fabs(double(f)), &e);  // |f| = m * 2^e, m in [0.5, 1)
  const int exp = e - 1 + 15;
  uint16_t sign = f < 0 ? 0x8000 : 0;
  if (exp <= 0) return sign;  // not used by the tests' data ranges
  long mant = std::lround((m * 2.0 - 1.0) * 1024.0);
  int ex = exp;
  if (mant == 1024) { mant = 0; ++ex; }
  return uint16_t(sign | (ex << 10) | mant);
}

// Random weights, stored in `wt` and returned widened (exactly) for the reference.
std::vector<float> random_weights(std::mt19937& rng, DType wt, int64_t count, std::vector<uint8_t>* storage) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> widened(static_cast<size_t>(count));
  storage->assign(size_t(count) * (wt == DType::F32 ? 4 : 2), 0);
  for (int64_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    if (wt == DType::F32) {
      std::memcpy(storage->data() + i * 4, &v, 4);
      widened[i] = v;
    } else if (wt == DType::BF16) {
      const uint16_t h = glm::f32_to_bf16(v);
      std::memcpy(storage->data() + i * 2, &h, 2);
      widened[i] = glm::bf16_to_f32(h);
    } else {
      const uint16_t h = f32_to_f16_bits(v);
      std::memcpy(storage->data() + i * 2, &h, 2);
      widened[i] = f16_reference(h);
    }
  }
  return widened;
}

struct Shape { int64_t T, N, K; };

// Runs one matmul case against a float64 reference; returns false (after reporting) on a mismatch.
bool check_matmul(ThreadPool& pool, std::mt19937& rng, DType wt, Shape s, bool with_bias, bool accumulate,
                  int64_t pad_x, int64_t pad_y, const char* isa) {
  const int64_t ldx = s.K + pad_x, ldy = s.N + pad_y;
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint8_t> w_storage;
  const std::vector<float> w = random_weights(rng, wt, s.N * s.K, &w_storage);
  // Padding is filled with huge values: a kernel reading past K would visibly break the result.
  std::vector<float> x(size_t(s.T * ldx), 1e30f);
  for (int64_t t = 0; t < s.T; ++t)
    for (int64_t k = 0; k < s.K; ++k) x[t * ldx + k] = dist(rng);
  std::vector<float> bias(size_t(s.N));
  for (auto& b : bias) b = dist(rng);
  const float kSentinel = 12345.0f;
  std::vector<float> y(size_t(s.T * ldy), kSentinel);
  for (int64_t t = 0; t < s.T; ++t)
    for (int64_t n = 0; n < s.N; ++n) y[t * ldy + n] = dist(rng);
  const std::vector<float> y0 = y;

  matmul(pool, x.data(), s.T, ldx, w_storage.data(), wt, s.N, s.K, with_bias ? bias.data() : nullptr, y.data(),
         ldy, accumulate);

  for (int64_t t = 0; t < s.T; ++t) {
    for (int64_t n = 0; n < ldy; ++n) {
      const float got = y[t * ldy + n];
      if (n >= s.N) {  // ldy padding must be untouched
        if (got != kSentinel) {
          CHECK(false) << isa << " " << glm::dtype_name(wt) << " T=" << s.T << " N=" << s.N << " K=" << s.K
                       << ": wrote padding at t=" << t << " n=" << n;
          return false;
        }
        continue;
      }
      double ref = 0.0, scale = 0.0;
      for (int64_t k = 0; k < s.K; ++k) {
        const double p = double(x[t * ldx + k]) * double(w[n * s.K + k]);
        ref += p;
        scale += std::fabs(p);
      }
      if (with_bias) { ref += bias[n]; scale += std::fabs(bias[n]); }
      if (accumulate) { ref += y0[t * ldy + n]; scale += std::fabs(y0[t * ldy + n]); }
      // Normalised error: fp32 accumulation of K products has relative error (to Σ|x·w|) of at most
      // about K·2^-24 in the worst case, and with per-lane partial sums (K/16 terms per lane plus a
      // short tree) far less; 1e-5 covers K up to a few thousand with margin. The bias and the
      // accumulated value add one rounding each, so they join the scale. 1e-7 absorbs K = 1 cases.
      const double err = std::fabs(double(got) - ref);
      if (!(err <= 1e-5 * scale + 1e-7)) {
        CHECK(false) << isa << " " << glm::dtype_name(wt) << " T=" << s.T << " N=" << s.N << " K=" << s.K
                     << " bias=" << with_bias << " acc=" << accumulate << " ldx=" << ldx << " ldy=" << ldy
                     << " threads=" << pool.size() << " at t=" << t << " n=" << n << ": got " << got
                     << " want " << ref << " (err " << err << ", scale " << scale << ")";
        return false;
      }
    }
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Thread pool
// ---------------------------------------------------------------------------------------------------

TEST(thread_pool_parallel_for_covers_each_index_once) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads) << pool.size();
    for (int64_t n : {0, 1, 2, 3, 5, 17, 100, 1000, 4097}) {
      for (int64_t grain : {0, 1, 2, 7, 64, 1000, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> chunks{0};
        std::atomic<bool> small_chunk{false};
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          ++chunks;
          if (e - b < std::max<int64_t>(grain, 1) && e - b != n) small_chunk = true;
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (int64_t i = 0; i < n; ++i)
          CHECK(hits[size_t(i)] == 1) << "threads=" << threads << " n=" << n << " grain=" << grain << " i=" << i;
        CHECK(chunks <= 4 * threads) << "threads=" << threads << " n=" << n << " chunks=" << chunks.load();
        CHECK(!small_chunk) << "a chunk smaller than grain: threads=" << threads << " n=" << n << " grain=" << grain;
      }
    }
  }
}

TEST(thread_pool_run_on_all_runs_each_index_once) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(threads));
    std::atomic<bool> wrong_count{false};
    pool.run_on_all([&](int i, int n) {
      if (n != threads) wrong_count = true;
      hits[size_t(i)]++;
    });
    for (int i = 0; i < threads; ++i) CHECK(hits[size_t(i)] == 1) << "threads=" << threads << " i=" << i;
    CHECK(!wrong_count);
  }
}

TEST(thread_pool_repeated_calls_do_not_deadlock) {
  // 10k back-to-back calls (spinning workers), with pauses longer than the spin window now and then so
  // the sleep / wake path is exercised too. A lost wake-up would hang here.
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::atomic<int64_t> total{0};
    for (int iter = 0; iter < 10000; ++iter) {
      if (iter % 2000 == 1999) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      pool.parallel_for(64, 1, [&](int64_t b, int64_t e) { total += e - b; });
    }
    CHECK(total == 64 * 10000) << total.load();
  }
}

TEST(thread_pool_nested_and_throwing_calls) {
  ThreadPool pool(3);
  // A nested call runs inline instead of deadlocking.
  std::atomic<int> inner{0};
  pool.parallel_for(3, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) pool.parallel_for(10, 1, [&](int64_t b2, int64_t e2) { inner += int(e2 - b2); });
  });
  CHECK(inner == 30) << inner.load();
  // An exception in any chunk reaches the caller after all chunks finished; the pool stays usable.
  for (int thrower = 0; thrower < 3; ++thrower) {
    bool caught = false;
    try {
      pool.run_on_all([&](int i, int) { if (i == thrower) throw std::runtime_error("boom"); });
    } catch (const std::runtime_error&) {
      caught = true;
    }
    CHECK(caught) << "thrower=" << thrower;
  }
  std::atomic<int> after{0};
  pool.run_on_all([&](int, int) { ++after; });
  CHECK(after == 3) << after.load();
}

// ---------------------------------------------------------------------------------------------------
// Vector helpers and conversions
// ---------------------------------------------------------------------------------------------------

TEST(kernels_isa_selection) {
  IsaGuard guard;
  CHECK(active_isa() == detected_isa()) << isa_name(active_isa());
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    CHECK(active_isa() == isa) << isa_name(isa);
  }
  std::printf("  detected ISA: %s\n", isa_name(detected_isa()));
}

TEST(kernels_convert_bf16_f16_exact) {
  IsaGuard guard;
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[size_t(i)] = uint16_t(i);
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    for (DType t : {DType::BF16, DType::F16}) {
      std::vector<float> out(65536 + 1, -7.0f);
      convert_to_f32(all.data(), t, out.data(), 65536);
      CHECK(out[65536] == -7.0f) << isa_name(isa) << " wrote past n";
      int bad = 0;
      for (int i = 0; i < 65536 && bad < 5; ++i) {
        const float want = t == DType::BF16 ? glm::bf16_to_f32(uint16_t(i)) : f16_reference(uint16_t(i));
        const float got = out[size_t(i)];
        // NaN must stay NaN with its sign (quieting is allowed); everything else bit-exact, which covers
        // ±0, subnormals and ±inf.
        const bool ok = std::isnan(want) ? (std::isnan(got) && std::signbit(got) == std::signbit(want))
                                          : bits_of(got) == bits_of(want);
        if (!ok) {
          ++bad;
          CHECK(false) << isa_name(isa) << " " << glm::dtype_name(t) << " 0x" << std::hex << i << std::dec
                       << ": got " << got << " want " << want;
        }
      }
      // Every length 1..40 at an odd offset: tails must convert exactly and stop at n.
      for (int64_t n = 1; n <= 40; ++n) {
        std::vector<float> part(size_t(n) + 1, -7.0f);
        convert_to_f32(all.data() + 0x3c01, t, part.data(), n);
        for (int64_t i = 0; i < n; ++i) CHECK(bits_of(part[size_t(i)]) == bits_of(out[size_t(0x3c01 + i)])) << n;
        CHECK(part[size_t(n)] == -7.0f) << isa_name(isa) << " tail overrun n=" << n;
      }
    }
    // F32 is a copy, NaN payloads included.
    std::vector<float> src(37), dst(37);
    for (int i = 0; i < 37; ++i) src[size_t(i)] = float(i) - 18.5f;
    src[3] = std::numeric_limits<float>::quiet_NaN();
    src[4] = -std::numeric_limits<float>::infinity();
    convert_to_f32(src.data(), DType::F32, dst.data(), 37);
    CHECK(std::memcmp(src.data(), dst.data(), sizeof(float) * 37) == 0) << isa_name(isa);
  }
  // A type this function does not convert yields NaN rather than garbage.
  std::vector<float> out(4, 0.0f);
  const uint8_t bytes[4] = {1, 2, 3, 4};
  convert_to_f32(bytes, DType::I8, out.data(), 4);
  for (float v : out) CHECK(std::isnan(v));
}

TEST(kernels_dot_and_axpy) {
  IsaGuard guard;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    for (int64_t n : {0, 1, 3, 7, 8, 15, 16, 17, 33, 63, 64, 65, 100, 1000, 4097}) {
      std::vector<float> a(size_t(n) + 1), b(size_t(n) + 1);
      for (auto& v : a) v = dist(rng);
      for (auto& v : b) v = dist(rng);
      a[size_t(n)] = b[size_t(n)] = 1e30f;  // just past the end: must not be read
      double ref = 0.0, scale = 0.0;
      for (int64_t i = 0; i < n; ++i) { ref += double(a[i]) * b[i]; scale += std::fabs(double(a[i]) * b[i]); }
      // Same normalised budget as matmul (a dot is one output of a matmul).
      const float got = dot(a.data(), b.data(), n);
      CHECK(std::fabs(got - ref) <= 1e-5 * scale + 1e-7) << isa_name(isa) << " n=" << n << " got " << got << " want " << ref;

      std::vector<float> y(size_t(n) + 1), y0;
      for (auto& v : y) v = dist(rng);
      y0 = y;
      const float alpha = 0.37f;
      axpy(alpha, a.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        // One multiply and one add (or a fused pair): at most one rounding each, relative to the terms.
        const double want = double(y0[i]) + double(alpha) * a[i];
        const double tol = 2.0 * std::ldexp(1.0, -24) * (std::fabs(y0[i]) + std::fabs(alpha * a[i]));
        CHECK(std::fabs(y[i] - want) <= tol) << isa_name(isa) << " n=" << n << " i=" << i;
      }
      CHECK(y[size_t(n)] == y0[size_t(n)]) << isa_name(isa) << " axpy wrote past n=" << n;
    }
  }
}

TEST(kernels_dot_rows_and_weighted_row_sum) {
  // The attention kernels over cached rows given by pointers (out of order in memory, as pages of a
  // pool are), for each KV element type, against float64 on the decoded values: d around the vector
  // widths (and head_dim 128 / 24), row counts from 1 to a run of 256, poison around every row.
  IsaGuard guard;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    for (DType rt : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      const int64_t es = rt == DType::F32 ? 4 : rt == DType::BF16 ? 2 : 1;
      for (int64_t d : {1, 7, 8, 16, 24, 33, 64, 100, 128, 129, 256}) {
        for (int64_t n : {1, 2, 5, 31, 256}) {
          const int64_t stride = (2 * d + 3) * es;  // bytes between rows in the buffer; gaps hold poison
          std::vector<uint8_t> buf(size_t(n * stride), 0x7f);
          std::vector<std::vector<double>> value(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(d)));
          std::vector<const void*> rows(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) {
            const int64_t slot = (j * 7 + 3) % n;  // not in j order
            uint8_t* row = buf.data() + slot * stride;
            rows[size_t(j)] = row;
            for (int64_t i = 0; i < d; ++i) {
              const float x = dist(rng) * 4.0f;
              if (rt == DType::F32) {
                std::memcpy(row + i * 4, &x, 4);
                value[size_t(j)][size_t(i)] = x;
              } else if (rt == DType::BF16) {
                const uint16_t h = f32_to_bf16(x);
                std::memcpy(row + i * 2, &h, 2);
                value[size_t(j)][size_t(i)] = bf16_to_f32(h);
              } else {
                row[i] = f32_to_e4m3(x);
                value[size_t(j)][size_t(i)] = e4m3_to_f32(row[i]);
              }
            }
          }
          std::vector<float> q(static_cast<size_t>(d)), w(static_cast<size_t>(n));
          for (auto& v : q) v = dist(rng);
          for (auto& v : w) v = dist(rng);
          std::vector<float> scores(size_t(n) + 1, -7.0f);
          dot_rows(q.data(), rows.data(), rt, n, d, scores.data());
          for (int64_t j = 0; j < n; ++j) {
            double ref = 0, scale = 0;
            for (int64_t i = 0; i < d; ++i) {
              ref += double(q[size_t(i)]) * value[size_t(j)][size_t(i)];
              scale += std::fabs(double(q[size_t(i)]) * value[size_t(j)][size_t(i)]);
            }
            CHECK(std::fabs(scores[size_t(j)] - ref) <= 1e-5 * scale + 1e-7)
                << isa_name(isa) << " " << dtype_name(rt) << " d=" << d << " n=" << n << " j=" << j;
          }
          CHECK(scores[size_t(n)] == -7.0f) << "dot_rows wrote past n";

          std::vector<float> out(size_t(d) + 1), out0;
          for (auto& v : out) v = dist(rng);
          out0 = out;
          weighted_row_sum(w.data(), rows.data(), rt, n, d, out.data());
          for (int64_t i = 0; i < d; ++i) {
            double ref = out0[size_t(i)], scale = std::fabs(out0[size_t(i)]);
            for (int64_t j = 0; j < n; ++j) {
              ref += double(w[size_t(j)]) * value[size_t(j)][size_t(i)];
              scale += std::fabs(double(w[size_t(j)]) * value[size_t(j)][size_t(i)]);
            }
            CHECK(std::fabs(out[size_t(i)] - ref) <= 1e-5 * scale + 1e-7)
                << isa_name(isa) << " " << dtype_name(rt) << " d=" << d << " n=" << n << " i=" << i;
          }
          CHECK(out[size_t(d)] == out0[size_t(d)]) << "weighted_row_sum wrote past d";
        }
      }
    }
  }
}

TEST(kernels_weights_stay_cached_only_for_small_models) {
  CHECK(weights_stay_cached(0));
  CHECK(!weights_stay_cached((uint64_t(32) << 20) + 1)) << "over the 32 MiB cap";
  CHECK(!weights_stay_cached(uint64_t(1) << 30)) << "the 1.2 GB bench model streams";
}

TEST(kernels_matmul_rows_do_not_depend_on_the_batch) {
  // Batch invariance (a request's tokens must not depend on what else is in its step): each output
  // of matmul is bit-identical whether its row is computed alone (GEMV), in any block position of a
  // GEMM, or among any number of other rows, for every weight format and ISA. Shapes cross the
  // GEMV single-row limit (K 4096) and the block sizes of every ISA.
  IsaGuard guard;
  std::mt19937 rng(29);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    ThreadPool pool(2);
    for (DType wt : {DType::BF16, DType::F32, DType::F16, DType::F8_E4M3}) {
      for (int64_t K : {int64_t(20), int64_t(300), int64_t(4100)}) {
        const int64_t N = 37, T = 19;
        const int64_t es = wt == DType::F32 ? 4 : wt == DType::F8_E4M3 ? 1 : 2;
        std::vector<uint8_t> w(size_t(N * K * es));
        for (int64_t i = 0; i < N * K; ++i) {
          const float v = dist(rng);
          if (wt == DType::F32) std::memcpy(&w[size_t(i * 4)], &v, 4);
          else if (wt == DType::BF16) { const uint16_t h = f32_to_bf16(v); std::memcpy(&w[size_t(i * 2)], &h, 2); }
          else if (wt == DType::F16) { const uint16_t h = uint16_t(0x3c00 | (uint32_t(i * 2654435761u) & 0x83ff)); std::memcpy(&w[size_t(i * 2)], &h, 2); }
          else w[size_t(i)] = f32_to_e4m3(v * 100);
        }
        Matrix m;
        m.data = w.data();
        m.dtype = wt;
        m.rows = N;
        m.cols = K;
        if (wt == DType::F8_E4M3) m.quant = Quant::Fp8Channel;
        std::vector<float> scales(size_t(N), 0.01f);
        if (wt == DType::F8_E4M3) m.scales = scales.data();
        std::vector<float> x(size_t(T * K));
        for (auto& v : x) v = dist(rng);
        std::vector<float> all(size_t(T * N));
        matmul(pool, x.data(), T, K, m, nullptr, all.data(), N);
        // Cache-resident weights block rows where others stream them one at a time: same bits.
        for (bool resident : {false, true}) {
          m.cache_resident = resident;
          const char* mode = resident ? " resident" : " streamed";
          for (int64_t t = 0; t < T; ++t) {
            std::vector<float> one(static_cast<size_t>(N));
            matmul(pool, x.data() + t * K, 1, K, m, nullptr, one.data(), N);
            for (int64_t n = 0; n < N; ++n) {
              CHECK(std::memcmp(&one[size_t(n)], &all[size_t(t * N + n)], 4) == 0)
                  << isa_name(isa) << " " << dtype_name(wt) << mode << " K=" << K << " row " << t << " out " << n << ": alone "
                  << one[size_t(n)] << " vs batched " << all[size_t(t * N + n)];
            }
          }
          // A few rows (a decode step's verification or routed expert) and another batch: every row in
          // another block position.
          for (int64_t first : {int64_t(5), int64_t(T - 2), int64_t(T - 4)}) {
            std::vector<float> tail(size_t((T - first) * N));
            matmul(pool, x.data() + first * K, T - first, K, m, nullptr, tail.data(), N);
            CHECK(std::memcmp(tail.data(), all.data() + first * N, tail.size() * 4) == 0)
                << isa_name(isa) << " " << dtype_name(wt) << mode << " K=" << K << " rows from " << first;
          }
        }
        m.cache_resident = false;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------------

TEST(kernels_matmul_matches_float64_reference) {
  IsaGuard guard;
  ThreadPool pool1(1), pool2(2), pool3(3);
  ThreadPool* pools[] = {&pool1, &pool2, &pool3};
  std::mt19937 rng(1234);
  int cases = 0;
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      int index = 0;
      bool ok = true;
      for (int64_t T : {1, 2, 3, 7, 17, 64}) {
        for (int64_t N : {1, 5, 31, 64, 129}) {
          for (int64_t K : {1, 3, 15, 16, 33, 100, 257, 1024}) {
            if (!ok) break;
            // Cycle the variants over the shapes so every combination of bias / accumulate / padding /
            // pool size meets many shapes without multiplying the run time.
            const int v = index++;
            const bool with_bias = (v & 1) != 0, accumulate = (v & 2) != 0;
            const int64_t pad_x = (v % 3) * 5, pad_y = (v % 5 == 0) ? 0 : 3;
            ThreadPool& pool = *pools[(v / 4) % 3];
            ok = check_matmul(pool, rng, wt, {T, N, K}, with_bias, accumulate, pad_x, pad_y, isa_name(isa));
            ++cases;
          }
        }
      }
      // Larger shapes: several threads, several token chunks (X chunk > 512 KB), rows split across
      // token-chunk boundaries, long K.
      const Shape big[] = {{1, 1000, 700}, {9, 300, 2050}, {100, 37, 3000}, {130, 70, 1500}, {1, 4097, 64}};
      for (const Shape& s : big) {
        for (ThreadPool* pool : pools) {
          if (!ok) break;
          ok = check_matmul(*pool, rng, wt, s, true, (cases & 1) != 0, 1, 2, isa_name(isa));
          ++cases;
        }
      }
    }
  }
  std::printf("  %d matmul cases\n", cases);
}

TEST(kernels_matmul_many_equals_separate_matmuls) {
  // One dispatch over several products must give bit-identical results to running each alone (same
  // tiles, same kernels), whatever the mix of shapes, dtypes, T == 1 and T > 1, bias and accumulate.
  IsaGuard guard;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  ThreadPool pool(3);
  struct Case { int64_t T, N, K; DType wt; bool bias, acc; };
  const std::vector<Case> cases = {{1, 64, 100, DType::BF16, true, false}, {1, 5, 33, DType::F32, false, true},
                                   {7, 129, 257, DType::F16, true, true}, {1, 1, 1, DType::BF16, false, false},
                                   {64, 31, 1024, DType::BF16, false, false}, {1, 300, 512, DType::BF16, false, true}};
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    std::vector<std::vector<float>> xs, ws32, biases, y_many, y_alone;
    std::vector<std::vector<uint16_t>> ws16;
    std::vector<MatmulJob> jobs;
    std::vector<glm::Matrix> mats(cases.size());
    for (const Case& c : cases) {
      xs.emplace_back(size_t(c.T * c.K));
      for (auto& v : xs.back()) v = dist(rng);
      biases.emplace_back(size_t(c.N));
      for (auto& v : biases.back()) v = dist(rng);
      ws32.emplace_back(size_t(c.N * c.K));
      ws16.emplace_back(size_t(c.N * c.K));
      for (size_t i = 0; i < ws32.back().size(); ++i) {
        const float w = dist(rng);
        ws32.back()[i] = w;
        ws16.back()[i] = c.wt == DType::F16 ? uint16_t(0x3c00 ^ (rng() & 0x03ff)) : glm::f32_to_bf16(w);
      }
      y_many.emplace_back(size_t(c.T * c.N));
      for (auto& v : y_many.back()) v = dist(rng);
      y_alone.push_back(y_many.back());
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const void* w = c.wt == DType::F32 ? static_cast<const void*>(ws32[i].data()) : static_cast<const void*>(ws16[i].data());
      mats[i].data = w;
      mats[i].dtype = c.wt;
      mats[i].rows = c.N;
      mats[i].cols = c.K;
      jobs.push_back({xs[i].data(), c.T, c.K, &mats[i], c.bias ? biases[i].data() : nullptr, y_many[i].data(), c.N, c.acc});
      matmul(pool, xs[i].data(), c.T, c.K, w, c.wt, c.N, c.K, c.bias ? biases[i].data() : nullptr, y_alone[i].data(), c.N, c.acc);
    }
    matmul_many(pool, jobs.data(), jobs.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      CHECK(y_many[i] == y_alone[i]) << isa_name(isa) << " case " << i;
    }
  }
}

TEST(kernels_matmul_degenerate_inputs) {
  IsaGuard guard;
  ThreadPool pool(2);
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    // K == 0: the sum is empty, so Y = bias (or Y + bias).
    float bias[3] = {1.0f, 2.0f, 3.0f};
    float y[3] = {10.0f, 10.0f, 10.0f};
    matmul(pool, nullptr, 1, 0, nullptr, DType::BF16, 3, 0, bias, y, 3, true);
    CHECK(y[0] == 11.0f && y[1] == 12.0f && y[2] == 13.0f) << isa_name(isa);
    matmul(pool, nullptr, 1, 0, nullptr, DType::BF16, 3, 0, nullptr, y, 3, false);
    CHECK(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f) << isa_name(isa);
    // T == 0 or N == 0 touch nothing.
    y[0] = 5.0f;
    matmul(pool, nullptr, 0, 0, nullptr, DType::F32, 3, 4, nullptr, y, 3, false);
    matmul(pool, nullptr, 1, 0, nullptr, DType::F32, 0, 4, nullptr, y, 3, false);
    CHECK(y[0] == 5.0f) << isa_name(isa);
    // An unsupported weight type writes NaN (loud) instead of reading the weights wrongly.
    const float x[4] = {1, 2, 3, 4};
    const uint8_t w[8] = {};
    matmul(pool, x, 1, 4, w, DType::F8_E4M3, 2, 4, nullptr, y, 3, false);
    CHECK(std::isnan(y[0]) && std::isnan(y[1]) && y[2] == 0.0f) << isa_name(isa);
    // inf / NaN in the weights propagate as in the reference (inf * 0 = NaN, inf * 1 = inf).
    const float xs[2] = {1.0f, 0.0f};
    const float wf[4] = {std::numeric_limits<float>::infinity(), 1.0f, 1.0f, std::numeric_limits<float>::infinity()};
    float out[2];
    matmul(pool, xs, 1, 2, wf, DType::F32, 2, 2, nullptr, out, 2, false);
    CHECK(std::isinf(out[0]) && std::isnan(out[1])) << isa_name(isa) << " " << out[0] << " " << out[1];
  }
}
