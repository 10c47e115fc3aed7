// Quantized-format kernels (issue 6): FP8 E4M3 / E8M0 / E2M1 conversions and the m16n8k32 e4m3 mma
// wrapper, dynamic FP8 activation quantization, MXFP4 GEMV/GEMM, FP8 GEMM (per-channel and 128x128
// block scales). Each product is checked twice:
//   (a) against a float64 dequantize-then-multiply reference over the same quantized operands (and the
//       kernel's own documented input rounding): only the fp32 summation order differs, so the budget
//       is a small multiple of K_eff * 2^-24 relative to sum |x_k w_k| per element;
//   (b) against the unquantized float64 product: the format's own error, budgeted per format below.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <cstdlib>

#include "kernel_test.h"
#include "ops.h"
#include "quant_ref.h"

using namespace glm_test;
using glm::cuda::Stream;
namespace q = glm_test::quant;

namespace {

// |got - ref| <= rel * scale[i] elementwise (scale = sum_k |x_k w_k|); NaN never passes.
bool expect_sum_order(const char* what, const std::vector<float>& got, const std::vector<double>& ref,
                      const std::vector<double>& scale, double rel) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || !(std::fabs(got[i] - ref[i]) <= rel * scale[i] + 1e-30)) {
      if (bad < 5) CHECK(false) << what << ": element " << i << " got " << got[i] << " want " << ref[i] << " (|terms| " << scale[i] << ")";
      ++bad;
    }
  }
  if (bad) CHECK(false) << what << ": " << bad << " of " << got.size() << " elements outside " << rel << " * sum|terms|";
  return bad == 0;
}

// Scheduling seeds: every seed for the shapes that exercise a kernel's barriers and pipelines at small
// cost, the first only for the big ones (the harness's fiber switches are what the suite's time goes to).
void for_seeds(bool all, const std::function<void(uint64_t)>& fn) {
  if (all) for_each_seed(fn);
  else fn(0);
}

// The format's error (b): ||y - y_exact|| / sqrt(sum_{m,n,k} (x_mk w_nk)^2). The denominator is the
// expected ||y_exact||^2 for independent random signs, so for a quantizer with independent per-element
// errors this is the relative rms error of the quantized operands whatever K is — a plain rel L2 of y
// swings with cancellation in short sums (K = 32 has a single term-block).
double format_error(const std::vector<float>& got, const std::vector<double>& exact, double energy) {
  double num = 0;
  for (size_t i = 0; i < got.size(); ++i) num += (got[i] - exact[i]) * (got[i] - exact[i]);
  return std::sqrt(num / (energy > 0 ? energy : 1));
}

// Weights with a spread of block magnitudes (some blocks 30x larger than others), so the per-block
// scales actually differ, plus an exact zero row block.
std::vector<float> weights(std::mt19937& rng, int64_t n, int64_t k) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const float mag = ((r * 7 + c / 32) % 5 == 0) ? 3.0f : 0.1f;
      w[size_t(r * k + c)] = d(rng) * mag;
    }
  }
  if (n > 2 && k >= 32) for (int c = 0; c < 32; ++c) w[size_t(2 * k + c)] = 0.0f;
  return w;
}

// ---- device-side conversion probes -------------------------------------------------------------

GLM_KERNEL void convert_kernel(float* e4m3_out, uint8_t* roundtrip, float* e8m0_out, const float* probes, int n_probes,
                               uint8_t* probe_q, float* x4_out) {
  const int t = int(threadIdx.x) + int(blockIdx.x) * int(blockDim.x);
  if (t < 64) {  // fp8x4_to_float on the word holding codes 4t .. 4t+3
    const uint32_t w = uint32_t(4 * t) | uint32_t(4 * t + 1) << 8 | uint32_t(4 * t + 2) << 16 | uint32_t(4 * t + 3) << 24;
    float f[4];
    glm::dev::fp8x4_to_float(w, f);
    for (int j = 0; j < 4; ++j) x4_out[4 * t + j] = f[j];
  }
  if (t < 256) {
    e4m3_out[t] = glm::dev::fp8_e4m3_to_float(uint8_t(t));
    roundtrip[t] = glm::dev::float_to_fp8_e4m3(e4m3_out[t]);
    e8m0_out[t] = glm::dev::e8m0_to_float(uint8_t(t));
  }
  if (t < n_probes) probe_q[t] = glm::dev::float_to_fp8_e4m3(probes[t]);
}

GLM_KERNEL void mxfp4_word_kernel(uint32_t* out, const uint32_t* words, int n) {
  const int t = int(threadIdx.x) + int(blockIdx.x) * int(blockDim.x);
  if (t >= n) return;
  uint32_t v[4];
  glm::dev::mxfp4_word_to_bf16x2(words[t], v);
  for (int i = 0; i < 4; ++i) out[4 * t + i] = v[i];
}

// One warp: D = A (16x32 e4m3, row-major) * B (32x8 e4m3, row-major k x n) + C through the wrapper,
// fragments built from the PTX ISA coordinates written out here.
template <bool kViaBf16>
GLM_KERNEL void mma_e4m3_kernel(float* d, const uint8_t* a, const uint8_t* b, const float* c) {
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  uint32_t af[4] = {0, 0, 0, 0}, bf[2] = {0, 0};
  for (int i = 0; i < 16; ++i) {
    const int row = g + 8 * ((i / 4) % 2), col = t * 4 + (i % 4) + 16 * (i / 8);
    af[i / 4] |= uint32_t(a[row * 32 + col]) << (8 * (i % 4));
  }
  for (int i = 0; i < 8; ++i) {
    const int k = t * 4 + (i % 4) + 16 * (i / 4);
    bf[i / 4] |= uint32_t(b[k * 8 + g]) << (8 * (i % 4));
  }
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[(g + 8 * (i / 2)) * 8 + t * 2 + (i % 2)];
  if (kViaBf16) glm::dev::mma_m16n8k32_e4m3_via_bf16(acc, af, bf);
  else glm::dev::mma_m16n8k32_e4m3(acc, af, bf);
  for (int i = 0; i < 4; ++i) d[(g + 8 * (i / 2)) * 8 + t * 2 + (i % 2)] = acc[i];
}

}  // namespace

TEST(wrapper_fp8_e4m3_e8m0_conversions_exact) {
  // Probes: random floats over the whole E4M3 range and beyond, exact midpoints between neighbours
  // (ties to even), subnormals, saturation, signed zero, Inf and NaN.
  std::mt19937 rng(31);
  std::vector<float> probes;
  std::uniform_real_distribution<float> e(-12.0f, 10.0f);
  for (int i = 0; i < 2000; ++i) probes.push_back((i & 1 ? -1.0f : 1.0f) * std::exp2(e(rng)));
  for (int c = 0; c < 0x7e; ++c) {
    const double lo = q::e4m3_value(uint8_t(c)), hi = q::e4m3_value(uint8_t(c + 1));
    probes.push_back(float((lo + hi) / 2));
    probes.push_back(-float((lo + hi) / 2));
  }
  for (float v : {0.0f, -0.0f, 448.0f, 449.0f, 464.0f, 1e9f, -1e9f, INFINITY, -INFINITY, 0.0009765625f, 0.00097f, 1e-30f})
    probes.push_back(v);
  DeviceBuffer<float> d_e4m3(256), d_e8m0(256), d_probes(probes), d_x4(256);
  DeviceBuffer<uint8_t> d_rt(256), d_pq(probes.size());
  const int n = int(probes.size());
  CHECK(GLM_LAUNCH(convert_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, nullptr, d_e4m3.get(), d_rt.get(), d_e8m0.get(),
                   d_probes.get(), n, d_pq.get(), d_x4.get()) == cudaSuccess);
  if (!device_ok("conversions")) return;
  const auto e4 = d_e4m3.download(), e8 = d_e8m0.download();
  const auto rt = d_rt.download(), pq = d_pq.download();
  const auto x4 = d_x4.download();
  for (int c = 0; c < 256; ++c) {
    const double want = q::e4m3_value(uint8_t(c));
    // fp8x4_to_float: exact for every finite code (subnormals included); NaN codes read as +-480.
    const double want4 = std::isnan(want) ? ((c & 0x80) ? -480.0 : 480.0) : want;
    CHECK(double(x4[size_t(c)]) == want4 && std::signbit(x4[size_t(c)]) == bool(c & 0x80)) << "fp8x4_to_float code " << c << ": " << x4[size_t(c)];
    if (std::isnan(want)) {
      CHECK(std::isnan(e4[size_t(c)]) && (rt[size_t(c)] & 0x7f) == 0x7f) << "e4m3 NaN code " << c;
    } else {
      CHECK(double(e4[size_t(c)]) == want && std::signbit(e4[size_t(c)]) == bool(c & 0x80)) << "e4m3 code " << c << " decodes to " << e4[size_t(c)];
      CHECK(rt[size_t(c)] == c) << "e4m3 round trip of code " << c << " gives " << int(rt[size_t(c)]);
    }
    const double w8 = q::e8m0_value(uint8_t(c));
    CHECK(std::isnan(w8) ? std::isnan(e8[size_t(c)]) : double(e8[size_t(c)]) == w8) << "e8m0 code " << c;
  }
  for (size_t i = 0; i < probes.size(); ++i) {
    const uint8_t want = q::e4m3_nearest(double(probes[i]));
    CHECK(pq[i] == want || (std::isnan(probes[i]) && (pq[i] & 0x7f) == 0x7f))
        << "float_to_fp8_e4m3(" << probes[i] << ") = " << int(pq[i]) << ", nearest-even saturating is " << int(want);
  }
}

TEST(wrapper_mxfp4_word_to_bf16x2_exact) {
  std::mt19937 rng(32);
  std::vector<uint32_t> words = {0x00000000u, 0xffffffffu, 0x76543210u, 0xfedcba98u, 0x88888888u};
  for (int i = 0; i < 300; ++i) words.push_back(rng());
  DeviceBuffer<uint32_t> d_w(words), d_o(words.size() * 4);
  CHECK(GLM_LAUNCH(mxfp4_word_kernel, dim3(unsigned((words.size() + 127) / 128)), dim3(128), 0, nullptr, d_o.get(), d_w.get(),
                   int(words.size())) == cudaSuccess);
  if (!device_ok("mxfp4 word")) return;
  const auto o = d_o.download();
  for (size_t i = 0; i < words.size(); ++i) {
    for (int e = 0; e < 8; ++e) {
      const uint32_t half = (o[4 * i + size_t(e / 2)] >> (16 * (e % 2))) & 0xffffu;
      const float got = glm::dev::bf16_to_float(uint16_t(half));
      const double want = q::kE2m1[(words[i] >> (4 * e)) & 15u];
      CHECK(double(got) == want && std::signbit(got) == std::signbit(want))
          << "word " << std::hex << words[i] << std::dec << " element " << e << ": " << got << " want " << want;
    }
  }
}

TEST(wrapper_mma_m16n8k32_e4m3_fragments_native_and_via_bf16) {
  std::mt19937 rng(33);
  std::vector<uint8_t> a(16 * 32), b(32 * 8);
  for (auto& v : a) { do v = uint8_t(rng()); while ((v & 0x7f) == 0x7f); }
  for (auto& v : b) { do v = uint8_t(rng()); while ((v & 0x7f) == 0x7f); }
  const auto c = random_floats(rng, 128);
  std::vector<double> ref(128), mag(128);
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      double s = c[size_t(r * 8 + n)], m = std::fabs(s);
      for (int k = 0; k < 32; ++k) {
        const double p = q::e4m3_value(a[size_t(r * 32 + k)]) * q::e4m3_value(b[size_t(k * 8 + n)]);
        s += p;
        m += std::fabs(p);
      }
      ref[size_t(r * 8 + n)] = s;
      mag[size_t(r * 8 + n)] = m;
    }
  }
  DeviceBuffer<uint8_t> d_a(a), d_b(b);
  DeviceBuffer<float> d_c(c), d_d(128);
  for_each_seed([&](uint64_t) {
    // Budget: exact products (up to 448^2), 32 fp32 additions in an unspecified order: 40 * 2^-24 of sum|terms|
    // (on Hopper the fp8 mma may keep fewer accumulator bits: 2^-13 there, measured by gpu-check).
#if defined(GLM_TEST_ON_GPU)
    const double rel = 1.25e-4;
#else
    const double rel = 2.5e-6;
#endif
    d_d.poison();
    CHECK(GLM_LAUNCH(mma_e4m3_kernel<false>, dim3(1), dim3(32), 0, nullptr, d_d.get(), d_a.get(), d_b.get(), d_c.get()) == cudaSuccess);
    if (device_ok("mma e4m3")) expect_sum_order("mma m16n8k32 e4m3", d_d.download(), ref, mag, rel);
    d_d.poison();
    CHECK(GLM_LAUNCH(mma_e4m3_kernel<true>, dim3(1), dim3(32), 0, nullptr, d_d.get(), d_a.get(), d_b.get(), d_c.get()) == cudaSuccess);
    if (device_ok("mma e4m3 via bf16")) expect_sum_order("mma m16n8k32 e4m3 via 2x bf16", d_d.download(), ref, mag, 2.5e-6);
  });
}

TEST(fp8_quantize_activations_bit_exact) {
  std::mt19937 rng(34);
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {3, 100}, {17, 160}, {130, 48}, {2, 4096}}) {
    const int64_t m = shape.first, k = shape.second;
    auto x = random_floats(rng, size_t(m * k), -3.0f, 3.0f);
    for (int64_t c = 0; c < k; ++c) x[size_t(c)] = 0.0f;  // an all-zero row: s = 0, q = 0
    if (m > 1) x[size_t(k + 5)] = 1000.0f;                 // one outlier dominates row 1's scale
    DeviceBuffer<float> d_x(x);
    for (int64_t group : {k, int64_t(128)}) {
      std::vector<uint8_t> rq;
      std::vector<float> rs;
      q::quantize_activations(x, m, k, group, rq, rs);
      DeviceBuffer<uint8_t> d_q(size_t(m * k));
      DeviceBuffer<float> d_s(rs.size());
      for_each_seed([&](uint64_t) {
        d_q.poison();
        d_s.poison();
        CHECK(glm::cuda::fp8_quantize_activations(Stream{}, d_q.get(), d_s.get(), d_x.get(), m, k, group).is_ok());
        if (!device_ok("act quant")) return;
        // Budget: none. amax/448 and x/s are correctly rounded fp32 operations and the conversion is
        // round-to-nearest-even with saturation on every target: bit-identical to the reference.
        CHECK(d_q.download() == rq) << "quantized activations differ (m " << m << ", k " << k << ", group " << group << ")";
        CHECK(d_s.download() == rs) << "activation scales differ (m " << m << ", k " << k << ", group " << group << ")";
      });
    }
  }
  DeviceBuffer<float> x(8);
  DeviceBuffer<uint8_t> xq(8);
  CHECK(!glm::cuda::fp8_quantize_activations(Stream{}, xq.get(), x.get(), x.get(), 1, 8, 3).is_ok()) << "group 3 rejected";
}

namespace {

struct Mx {
  q::Mxfp4 w;
  std::vector<float> wf;
};

// (a) and (b) for one MXFP4 product. x_used: the activations as the kernel sees them (bf16-rounded for
// the GEMM, as given for the GEMV).
void check_mxfp4(const char* what, const std::vector<float>& got, const std::vector<float>& x, const std::vector<float>& x_used,
                 const Mx& mx, int64_t m, double format_budget) {
  const int64_t n = mx.w.n, k = mx.w.k;
  std::vector<double> ref(size_t(m * n)), mag(size_t(m * n)), exact(size_t(m * n));
  double energy = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0, e = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(x_used[size_t(r * k + i)]) * mx.w.at(c, i);
        const double u = double(x[size_t(r * k + i)]) * double(mx.wf[size_t(c * k + i)]);
        s += p;
        a += std::fabs(p);
        e += u;
        energy += u * u;
      }
      ref[size_t(r * n + c)] = s;
      mag[size_t(r * n + c)] = a;
      exact[size_t(r * n + c)] = e;
    }
  }
  // (a) Budget: fp32 sums — 32-term block sums, a per-lane/per-thread running sum over k/32 (GEMV) or
  // k/16 (GEMM mma chain) blocks, a 5-level warp tree: < (32 + k/16 + 5) * 2^-24 of sum|terms|;
  // with k <= 4096 that is < 2e-5.
  expect_sum_order(what, got, ref, mag, 2e-5);
  // (b) The format's error against the unquantized product.
  const double err = format_error(got, exact, energy);
  if (m * n * k < 4096) format_budget *= 2;
  if (std::getenv("GLM_QUANT_REPORT")) std::printf("    %s m %lld n %lld k %lld: format error %.4f\n", what, (long long)m, (long long)n, (long long)k, err);
  CHECK(err <= format_budget) << what << ": error vs the unquantized product " << err << " (budget " << format_budget << ")";
}

Mx make_mx(std::mt19937& rng, int64_t n, int64_t k) {
  Mx mx;
  mx.wf = weights(rng, n, k);
  mx.w = q::quantize_mxfp4(mx.wf, n, k);
  return mx;
}

}  // namespace

// MXFP4 format budget (b): E2M1 keeps one mantissa bit; with round-up power-of-two block scales the
// block's largest element maps into (3, 6] and the nearest-code error of the others is up to half a
// code step. Measured here (format_error, large shapes): 0.11-0.13. Budget 0.15; products over fewer
// than 4096 terms are a small statistical sample (one 32-term block per output at k = 32): twice that.
constexpr double kMxfp4FormatBudget = 0.15;

TEST(mxfp4_gemv_decode_shapes) {
  std::mt19937 rng(35);
  struct S { int64_t n, k; };
  for (const S s : {S{1, 32}, S{13, 96}, S{100, 1408}, S{9, 4096}}) {
    const Mx mx = make_mx(rng, s.n, s.k);
    DeviceBuffer<uint8_t> d_b(mx.w.blocks), d_s(mx.w.scales);
    const glm::cuda::Mxfp4Weight w{d_b.get(), d_s.get(), s.n, s.k};
    for (int64_t m = 1; m <= 4; ++m) {
      if (s.k == 4096 && m != 1 && m != 4) continue;
      const auto x = random_floats(rng, size_t(m * s.k), -1.0f, 1.0f);
      DeviceBuffer<float> d_x(x), d_y(size_t(m * s.n));
      for_seeds(s.k < 4096, [&](uint64_t) {
        d_y.poison();
        CHECK(glm::cuda::mxfp4_gemv(Stream{}, d_y.get(), d_x.get(), w, m).is_ok());
        if (device_ok("mxfp4 gemv")) check_mxfp4("mxfp4 gemv", d_y.download(), x, x, mx, m, kMxfp4FormatBudget);
      });
    }
  }
}

TEST(mxfp4_gemm_prefill_shapes) {
  std::mt19937 rng(36);
  struct S { int64_t m, n, k; };
  for (const S s : {S{1, 5, 32}, S{3, 70, 96}, S{17, 64, 288}, S{130, 131, 160}}) {
    const Mx mx = make_mx(rng, s.n, s.k);
    DeviceBuffer<uint8_t> d_b(mx.w.blocks), d_s(mx.w.scales);
    const glm::cuda::Mxfp4Weight w{d_b.get(), d_s.get(), s.n, s.k};
    const auto x = random_floats(rng, size_t(s.m * s.k), -1.0f, 1.0f);
    std::vector<float> xb(x.size());
    for (size_t i = 0; i < x.size(); ++i) xb[i] = from_bf16(to_bf16(x[i]));  // the kernel's one rounding
    DeviceBuffer<float> d_x(x), d_y(size_t(s.m * s.n));
    for_seeds(s.m < 128, [&](uint64_t) {
      d_y.poison();
      CHECK(glm::cuda::mxfp4_gemm(Stream{}, d_y.get(), d_x.get(), w, s.m).is_ok());
      // (b) adds bf16 rounding of x (2^-9 relative) to the format's error: negligible next to it.
      if (device_ok("mxfp4 gemm")) check_mxfp4("mxfp4 gemm", d_y.download(), x, xb, mx, s.m, kMxfp4FormatBudget);
    });
    if (s.m <= 4) {  // the dispatcher's GEMV path agrees too
      d_y.poison();
      CHECK(glm::cuda::mxfp4_matmul(Stream{}, d_y.get(), d_x.get(), w, s.m).is_ok());
      if (device_ok("mxfp4 matmul")) check_mxfp4("mxfp4 matmul (gemv)", d_y.download(), x, x, mx, s.m, kMxfp4FormatBudget);
    }
  }
  DeviceBuffer<float> b(64);
  DeviceBuffer<uint8_t> u(64);
  CHECK(!glm::cuda::mxfp4_gemm(Stream{}, b.get(), b.get(), {u.get(), u.get(), 1, 48}, 1).is_ok()) << "k % 32 != 0 rejected";
  CHECK(!glm::cuda::mxfp4_gemv(Stream{}, b.get(), b.get(), {u.get(), u.get(), 1, 32}, 5).is_ok()) << "gemv m > 4 rejected";
}

TEST(mxfp4_nan_scale_propagates) {
  std::mt19937 rng(37);
  Mx mx = make_mx(rng, 3, 64);
  mx.w.scales[1 * 2 + 1] = 0xff;  // row 1, second block: NaN
  DeviceBuffer<uint8_t> d_b(mx.w.blocks), d_s(mx.w.scales);
  const glm::cuda::Mxfp4Weight w{d_b.get(), d_s.get(), 3, 64};
  const auto x = random_floats(rng, 5 * 64);
  DeviceBuffer<float> d_x(x), d_y(5 * 3);
  for (int pass = 0; pass < 2; ++pass) {
    d_y.poison();
    const int64_t m = pass == 0 ? 1 : 5;
    CHECK((pass == 0 ? glm::cuda::mxfp4_gemv(Stream{}, d_y.get(), d_x.get(), w, m) : glm::cuda::mxfp4_gemm(Stream{}, d_y.get(), d_x.get(), w, m)).is_ok());
    if (!device_ok("mxfp4 nan")) continue;
    const auto y = d_y.download();
    for (int64_t r = 0; r < m; ++r) {
      CHECK(std::isnan(y[size_t(r * 3 + 1)]) && !std::isnan(y[size_t(r * 3)]) && !std::isnan(y[size_t(r * 3 + 2)]))
          << (pass == 0 ? "gemv" : "gemm") << ": a 0xFF scale makes exactly its row NaN";
    }
  }
}

namespace {

// FP8 format budget (b): E4M3 keeps 3 mantissa bits: relative rounding error up to 2^-4 (rms ~0.02
// per operand inside the normal range; more for values pushed toward the subnormals by a large row
// maximum, as the per-channel scale does to this test's quiet blocks). Weights and activations are
// both quantized. Measured here (large shapes): 0.034-0.039. Budget 0.045; small samples twice that.
constexpr double kFp8FormatBudget = 0.045;

void run_fp8_gemm(std::mt19937& rng, int64_t m, int64_t n, int64_t k, bool block, bool sm90) {
  const auto wf = weights(rng, n, k);
  const q::Fp8 fw = q::quantize_fp8(wf, n, k, block);
  const auto x = random_floats(rng, size_t(m * k), -2.0f, 2.0f);
  const int64_t group = block ? 128 : k;
  std::vector<uint8_t> xq;
  std::vector<float> xs;
  q::quantize_activations(x, m, k, group, xq, xs);
  const int64_t groups = (k + group - 1) / group;
  std::vector<double> ref(size_t(m * n)), mag(size_t(m * n)), exact(size_t(m * n));
  double energy = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0, e = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = q::e4m3_value(xq[size_t(r * k + i)]) * xs[size_t(r * groups + i / group)] * fw.at(c, i);
        const double u = double(x[size_t(r * k + i)]) * double(wf[size_t(c * k + i)]);
        s += p;
        a += std::fabs(p);
        e += u;
        energy += u * u;
      }
      ref[size_t(r * n + c)] = s;
      mag[size_t(r * n + c)] = a;
      exact[size_t(r * n + c)] = e;
    }
  }
  DeviceBuffer<float> d_x(x), d_xs(xs.size()), d_ws(fw.scales), d_y(size_t(m * n));
  DeviceBuffer<uint8_t> d_xq(xq.size()), d_w(fw.q);
  const glm::cuda::Fp8Weight w{d_w.get(), d_ws.get(), n, k, block ? glm::cuda::Fp8Scaling::Block128 : glm::cuda::Fp8Scaling::PerChannel};
  for_seeds(m < 128, [&](uint64_t) {
    d_y.poison();
    d_xq.poison();
    // The activations go through the device quantizer (bit-exact with xq/xs, tested above).
    CHECK(glm::cuda::fp8_quantize_activations(Stream{}, d_xq.get(), d_xs.get(), d_x.get(), m, k, group).is_ok());
    const auto st = sm90 ? glm::cuda::fp8_gemm_sm90(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), w, m)
                         : glm::cuda::fp8_gemm(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), w, m);
    CHECK(st.is_ok()) << st.message();
    if (!device_ok("fp8 gemm")) return;
    const auto y = d_y.download();
    // (a) Budget: exact e4m3 products; fp32 sums along the mma chain (<= k/32 + 32 terms per step), the
    // scale multiplications (2 roundings): < 2e-5 of sum|terms| for k <= 4096. Hopper's fp8 tensor cores
    // keep fewer accumulator bits (DeepSeek-V3: ~14): on the GPU the budget is 2^-12 for per-channel
    // (all of K in one mma chain), 2^-13 for block scales (128 at a time, promoted in fp32).
#if defined(GLM_TEST_ON_GPU)
    const double rel = block ? 1.25e-4 : 2.5e-4;
#else
    const double rel = 2e-5;
#endif
    expect_sum_order(block ? "fp8 gemm block128 (a)" : "fp8 gemm per-channel (a)", y, ref, mag, rel);
    const double err = format_error(y, exact, energy);
    const double budget = m * n * k < 4096 ? 2 * kFp8FormatBudget : kFp8FormatBudget;
    if (std::getenv("GLM_QUANT_REPORT")) std::printf("    fp8 %s m %lld n %lld k %lld: format error %.4f\n", block ? "block" : "channel", (long long)m, (long long)n, (long long)k, err);
    CHECK(err <= budget) << "fp8 gemm (b): error vs the unquantized product " << err << " (budget " << budget << ")";
  });
}

struct Fp8Shape { int64_t m, n, k; };
// M in {1, 3, 17, 130}; N not a multiple of 64, crossing a 128-row scale block; K not a multiple of 128
// (the edge block is zero-padded: K = 144, 272).
const Fp8Shape kFp8Shapes[] = {{1, 1, 16}, {3, 70, 144}, {17, 200, 272}, {130, 129, 128}};

}  // namespace

TEST(fp8_gemm_per_channel_scales) {
  std::mt19937 rng(38);
  for (const auto& s : kFp8Shapes) run_fp8_gemm(rng, s.m, s.n, s.k, false, false);
  DeviceBuffer<float> b(64);
  DeviceBuffer<uint8_t> u(64);
  CHECK(!glm::cuda::fp8_gemm(Stream{}, b.get(), u.get(), b.get(), {u.get(), b.get(), 1, 24, glm::cuda::Fp8Scaling::PerChannel}, 1).is_ok())
      << "k % 16 != 0 rejected";
}

TEST(fp8_gemm_block128_scales) {
  std::mt19937 rng(39);
  for (const auto& s : kFp8Shapes) run_fp8_gemm(rng, s.m, s.n, s.k, true, false);
}

TEST(fp8_gemm_sm90_twin_matches_when_available) {
  // The harness (and builds without sm_90a) report the fast path unavailable; on an H200 it must
  // meet the same budgets as the portable path on the same shapes plus a multi-tile one.
  if (!glm::cuda::fp8_gemm_sm90_available()) {
    DeviceBuffer<float> b(64);
    DeviceBuffer<uint8_t> u(64);
    CHECK(!glm::cuda::fp8_gemm_sm90(Stream{}, b.get(), u.get(), b.get(), {u.get(), b.get(), 1, 16, glm::cuda::Fp8Scaling::PerChannel}, 1).is_ok())
        << "unavailable fast path reports an error";
    return;
  }
  std::mt19937 rng(40);
  for (bool block : {false, true}) {
    for (const auto& s : kFp8Shapes) run_fp8_gemm(rng, s.m, s.n, s.k, block, true);
    run_fp8_gemm(rng, 300, 384, 1024, block, true);
  }
}

namespace {

// Fused expert MLP decode against float64: (a) over the dequantized weights (fp32 x), (b) over the
// unquantized weights. The per-output budget for (a) follows the error through the two stages: each
// gate/up sum is off by < 2e-5 of its sum|terms| (G, U), so act = silu(g)*u is off by < ~2e-5 * G*U
// (|silu'| < 1.1, |silu(g)| <= |g| + 0.3), and the down sum adds its own 2e-5 of sum|terms|; the scale
// is sum_k |w_k| sum_i |d_hi| (|act_i| + G_i*U_i).
struct MoeCase {
  int64_t T, H, I, E, K;
};

void run_moe(std::mt19937& rng, const MoeCase& c, int format /*0 mxfp4, 1 fp8 channel, 2 fp8 block*/) {
  const auto gate_f = weights(rng, c.E * c.I, c.H), up_f = weights(rng, c.E * c.I, c.H), down_f = weights(rng, c.E * c.H, c.I);
  const auto x = random_floats(rng, size_t(c.T * c.H), -1.0f, 1.0f);
  std::vector<int32_t> ids(size_t(c.T * c.K));
  std::vector<float> rw(size_t(c.T * c.K));
  for (int64_t t = 0; t < c.T; ++t) {
    std::vector<int32_t> perm(size_t(c.E));
    for (int64_t e = 0; e < c.E; ++e) perm[size_t(e)] = int32_t(e);
    std::shuffle(perm.begin(), perm.end(), rng);
    float sum = 0;
    for (int64_t k = 0; k < c.K; ++k) {
      ids[size_t(t * c.K + k)] = perm[size_t(k)];
      rw[size_t(t * c.K + k)] = 0.2f + float(rng() % 100) / 100.0f;
      sum += rw[size_t(t * c.K + k)];
    }
    for (int64_t k = 0; k < c.K; ++k) rw[size_t(t * c.K + k)] /= sum;
  }
  if (c.T > 1) ids[size_t(c.K)] = -1;  // token 1's first slot: no expert (contributes nothing)
  // Dequantized accessors per matrix (expert-stacked rows).
  std::function<double(int, int64_t, int64_t, int64_t)> deq;  // (matrix 0 gate / 1 up / 2 down, expert, row, col)
  q::Mxfp4 mg, mu, md;
  std::vector<q::Fp8> fg, fu, fd;  // per expert
  if (format == 0) {
    mg = q::quantize_mxfp4(gate_f, c.E * c.I, c.H);
    mu = q::quantize_mxfp4(up_f, c.E * c.I, c.H);
    md = q::quantize_mxfp4(down_f, c.E * c.H, c.I);
    deq = [&](int mat, int64_t e, int64_t r, int64_t col) {
      return mat == 0 ? mg.at(e * c.I + r, col) : mat == 1 ? mu.at(e * c.I + r, col) : md.at(e * c.H + r, col);
    };
  } else {
    for (int64_t e = 0; e < c.E; ++e) {
      auto slice = [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
        return std::vector<float>(w.begin() + e * rows * cols, w.begin() + (e + 1) * rows * cols);
      };
      fg.push_back(q::quantize_fp8(slice(gate_f, c.I, c.H), c.I, c.H, format == 2));
      fu.push_back(q::quantize_fp8(slice(up_f, c.I, c.H), c.I, c.H, format == 2));
      fd.push_back(q::quantize_fp8(slice(down_f, c.H, c.I), c.H, c.I, format == 2));
    }
    deq = [&](int mat, int64_t e, int64_t r, int64_t col) {
      return mat == 0 ? fg[size_t(e)].at(r, col) : mat == 1 ? fu[size_t(e)].at(r, col) : fd[size_t(e)].at(r, col);
    };
  }
  std::vector<double> ref(size_t(c.T * c.H), 0.0), scale(size_t(c.T * c.H), 0.0), exact(size_t(c.T * c.H), 0.0);
  for (int64_t t = 0; t < c.T; ++t) {
    for (int64_t k = 0; k < c.K; ++k) {
      const int32_t e = ids[size_t(t * c.K + k)];
      if (e < 0) continue;
      const double wk = rw[size_t(t * c.K + k)];
      std::vector<double> act(size_t(c.I)), amag(size_t(c.I)), act_exact(size_t(c.I));
      for (int64_t i = 0; i < c.I; ++i) {
        double g = 0, u = 0, G = 0, U = 0, ge = 0, ue = 0;
        for (int64_t h = 0; h < c.H; ++h) {
          const double xv = x[size_t(t * c.H + h)];
          const double a = deq(0, e, i, h) * xv, b = deq(1, e, i, h) * xv;
          g += a;
          u += b;
          G += std::fabs(a);
          U += std::fabs(b);
          ge += double(gate_f[size_t((e * c.I + i) * c.H + h)]) * xv;
          ue += double(up_f[size_t((e * c.I + i) * c.H + h)]) * xv;
        }
        act[size_t(i)] = g / (1.0 + std::exp(-g)) * u;
        amag[size_t(i)] = std::fabs(act[size_t(i)]) + G * U;
        act_exact[size_t(i)] = ge / (1.0 + std::exp(-ge)) * ue;
      }
      for (int64_t h = 0; h < c.H; ++h) {
        double s = 0, m = 0, se = 0;
        for (int64_t i = 0; i < c.I; ++i) {
          const double d = deq(2, e, h, i);
          s += d * act[size_t(i)];
          m += std::fabs(d) * amag[size_t(i)];
          se += double(down_f[size_t((e * c.H + h) * c.I + i)]) * act_exact[size_t(i)];
        }
        ref[size_t(t * c.H + h)] += wk * s;
        scale[size_t(t * c.H + h)] += wk * m;
        exact[size_t(t * c.H + h)] += wk * se;
      }
    }
  }
  const glm::cuda::MoeDecodeArgs args{c.T, c.H, c.I, c.E, c.K};
  DeviceBuffer<float> d_x(x), d_rw(rw), d_y(size_t(c.T * c.H)), d_ws(size_t(glm::cuda::moe_experts_decode_workspace_floats(args)));
  DeviceBuffer<int32_t> d_ids(ids);
  auto concat_q = [](const std::vector<q::Fp8>& v) { std::vector<uint8_t> o; for (auto& f : v) o.insert(o.end(), f.q.begin(), f.q.end()); return o; };
  auto concat_s = [](const std::vector<q::Fp8>& v) { std::vector<float> o; for (auto& f : v) o.insert(o.end(), f.scales.begin(), f.scales.end()); return o; };
  DeviceBuffer<uint8_t> gb(format == 0 ? mg.blocks : concat_q(fg)), ub(format == 0 ? mu.blocks : concat_q(fu)), db(format == 0 ? md.blocks : concat_q(fd));
  DeviceBuffer<uint8_t> gs8(mg.scales), us8(mu.scales), ds8(md.scales);
  DeviceBuffer<float> gsf(concat_s(fg)), usf(concat_s(fu)), dsf(concat_s(fd));
  const char* what = format == 0 ? "moe decode mxfp4" : format == 1 ? "moe decode fp8 per-channel" : "moe decode fp8 block128";
  // The three formats share one kernel template: the MXFP4 instance runs under every scheduling seed,
  // the FP8 ones under the first.
  auto body = [&](uint64_t) {
    d_y.poison();
    d_ws.poison();
    const glm::Status st = [&] {
      if (format == 0) {
        const glm::cuda::Mxfp4Experts w{gb.get(), gs8.get(), ub.get(), us8.get(), db.get(), ds8.get()};
        return glm::cuda::moe_experts_decode_mxfp4(Stream{}, d_y.get(), d_x.get(), d_ids.get(), d_rw.get(), w, args, d_ws.get(), int64_t(d_ws.size()));
      }
      const glm::cuda::Fp8Experts w{gb.get(), ub.get(), db.get(), gsf.get(), usf.get(), dsf.get(),
                                    format == 2 ? glm::cuda::Fp8Scaling::Block128 : glm::cuda::Fp8Scaling::PerChannel};
      return glm::cuda::moe_experts_decode_fp8(Stream{}, d_y.get(), d_x.get(), d_ids.get(), d_rw.get(), w, args, d_ws.get(), int64_t(d_ws.size()));
    }();
    CHECK(st.is_ok()) << st.message();
    if (!device_ok(what)) return;
    const auto y = d_y.download();
    expect_sum_order(what, y, ref, scale, 4e-5);  // (a)
    // (b) rel L2 against the unquantized MLP: two quantized stages compound (gate/up errors pass through
    // SiLU*mul into act, then down adds its own), and the few hundred outputs of these shapes make it a
    // noisy statistic: over 12 random draws of these cases, 0.17-0.27 for MXFP4 and 0.036-0.059 for
    // weight-only FP8 (three quantized matrices of ~0.03 each). Budgets 0.32 / 0.075.
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); ++i) { num += (y[i] - exact[i]) * (y[i] - exact[i]); den += exact[i] * exact[i]; }
    const double err = std::sqrt(num / den), budget = format == 0 ? 0.32 : 0.075;
    if (std::getenv("GLM_QUANT_REPORT")) std::printf("    %s T %lld H %lld I %lld: error vs unquantized %.4f\n", what, (long long)c.T, (long long)c.H, (long long)c.I, err);
    CHECK(err <= budget) << what << " (b): rel L2 vs the unquantized MLP " << err << " (budget " << budget << ")";
  };
  for_seeds(format == 0, body);
}

}  // namespace

TEST(moe_experts_decode_mxfp4_and_fp8) {
  std::mt19937 rng(41);
  // One token with top-8 of 10 experts (Air's decode case, scaled down: the harness runs every fiber), and two tokens with top-3 of 5
  // on awkward sizes (hidden 160 = 5 blocks, inter 96 = 3 blocks; 128x128 edge blocks zero-padded).
  for (const MoeCase c : {MoeCase{1, 128, 64, 10, 8}, MoeCase{2, 160, 96, 5, 3}}) {
    for (int format : {0, 1, 2}) run_moe(rng, c, format);
  }
  DeviceBuffer<float> b(64);
  DeviceBuffer<int32_t> ids(1);
  CHECK(!glm::cuda::moe_experts_decode_fp8(Stream{}, b.get(), b.get(), ids.get(), b.get(), {}, {1, 48, 32, 1, 1}, b.get(), 64).is_ok())
      << "null weights / hidden % 32 rejected";
}
