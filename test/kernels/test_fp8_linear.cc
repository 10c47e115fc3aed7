// FP8 dense projections for the CUDA backend (issue 5): fp8_gemv (decode, weight-only) and
// fp8_dequant_gemm (prefill, weights widened to bf16 tiles) against float64 versions of the CPU
// backend's FP8 matmul (cpp/cpu/kernels.h): PerChannel y = (sum_k e4m3(w) x) * s + bias, Block128
// y = sum_k fl32(e4m3(w) * s) x + bias, optionally added to the prior y. Budgets, per element, relative
// to scale = sum_k |x_k w_k| + |bias| + |prior y|:
//   fp8_gemv: only the fp32 summation order (and the per-channel scale multiply) differs: 2e-5 (k <= 2064
//     terms split over 128 lanes, a few roundings of <= 2^-24 of the running sum each);
//   fp8_dequant_gemm: (a) against the reference over the kernel's documented roundings (x -> bf16 RNE;
//     Block128: bf16(fl32(x * s)) times the exact e4m3): the same 2e-5; (b) against the fp32-x CPU
//     reference: 2^-8 (one <= 2^-9 relative rounding of each x, or x * s, plus Block128's fl32(e4m3 * s)).
// On a GPU the tensor cores' accumulation width is the hardware's; (a) is exact only on the harness.
#include <functional>

#include "kernel_test.h"
#include "ops.h"
#include "quant_ref.h"

using namespace glm_test;
using glm::cuda::Fp8Scaling;
using glm::cuda::Fp8Weight;
using glm::cuda::Stream;
namespace q = glm_test::quant;

namespace {

bool expect_scaled(const char* what, const std::vector<float>& got, const std::vector<double>& ref, const std::vector<double>& scale,
                   double rel) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || !(std::fabs(got[i] - ref[i]) <= rel * scale[i] + 1e-30)) {
      if (bad < 5) CHECK(false) << what << ": element " << i << " got " << got[i] << " want " << ref[i] << " (scale " << scale[i] << ")";
      ++bad;
    }
  }
  if (bad) CHECK(false) << what << ": " << bad << " of " << got.size() << " elements outside " << rel << " * scale";
  return bad == 0;
}

double bf16_round(double v) { return from_bf16(to_bf16(float(v))); }

// Weights with rows of very different magnitudes (so per-row and per-block scales differ) and a zero row.
std::vector<float> make_weights(std::mt19937& rng, int64_t n, int64_t k) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) {
    const float mag = r == 2 ? 0.0f : (r % 7 == 0 ? 30.0f : 1.0f) / std::sqrt(float(k));
    for (int64_t c = 0; c < k; ++c) w[size_t(r * k + c)] = d(rng) * mag;
  }
  return w;
}

void run(std::mt19937& rng, int64_t m, int64_t n, int64_t k, bool block, bool with_bias, bool accumulate, bool gemm, bool all_seeds) {
  const q::Fp8 fw = q::quantize_fp8(make_weights(rng, n, k), n, k, block);
  const auto x = random_floats(rng, size_t(m * k), -2.0f, 2.0f);
  const auto bias = random_floats(rng, size_t(n), -1.0f, 1.0f);
  const auto prior = random_floats(rng, size_t(m * n), -1.0f, 1.0f);
  // CPU-math reference (fp32 x), the kernel-rounding reference (GEMM: bf16 x, bf16 block weights), scale.
  std::vector<double> ref(size_t(m * n)), ref_k(size_t(m * n)), mag(size_t(m * n));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, sk = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double e = q::e4m3_value(fw.q[size_t(c * k + i)]);
        const double wv = block ? double(float(e * fw.scale_of(c, i))) : e;  // Block128: fl32(e4m3 * s)
        const double xv = x[size_t(r * k + i)];
        s += wv * xv;
        if (gemm && block) sk += e * bf16_round(double(float(xv) * float(fw.scale_of(c, i))));  // scale folded into x
        else sk += wv * (gemm ? bf16_round(xv) : xv);
        a += std::fabs(wv * xv) * (block ? 1.0 : fw.scale_of(c, i));
      }
      if (!block) s *= fw.scale_of(c, 0), sk *= fw.scale_of(c, 0);
      const double extra = (with_bias ? bias[size_t(c)] : 0.0) + (accumulate ? prior[size_t(r * n + c)] : 0.0);
      ref[size_t(r * n + c)] = s + extra;
      ref_k[size_t(r * n + c)] = sk + extra;
      mag[size_t(r * n + c)] = a + (with_bias ? std::fabs(bias[size_t(c)]) : 0.0) + (accumulate ? std::fabs(prior[size_t(r * n + c)]) : 0.0);
    }
  }
  DeviceBuffer<float> d_x(x), d_s(fw.scales), d_b(bias), d_y(size_t(m * n));
  DeviceBuffer<uint8_t> d_w(fw.q);
  const Fp8Weight w{d_w.get(), d_s.get(), n, k, block ? Fp8Scaling::Block128 : Fp8Scaling::PerChannel};
  const std::string what = std::string(gemm ? "fp8_dequant_gemm" : "fp8_gemv") + (block ? " block128" : " channel") + " m=" +
                           std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + (with_bias ? " bias" : "") +
                           (accumulate ? " +=" : "");
  auto once = [&](uint64_t) {
    if (accumulate) d_y.upload(prior);
    else d_y.poison();
    const float* b = with_bias ? d_b.get() : nullptr;
    const auto st = gemm ? glm::cuda::fp8_dequant_gemm(Stream{}, d_y.get(), d_x.get(), w, b, m, accumulate)
                         : glm::cuda::fp8_gemv(Stream{}, d_y.get(), d_x.get(), w, b, m, accumulate);
    CHECK(st.is_ok()) << what << ": " << st.message();
    if (!device_ok(what.c_str())) return;
    const auto y = d_y.download();
    expect_scaled((what + " (a)").c_str(), y, ref_k, mag, 2e-5);
    if (gemm) expect_scaled((what + " (b) vs fp32 x").c_str(), y, ref, mag, 1.0 / 256);
  };
  if (all_seeds) for_each_seed(once);
  else once(0);
}

}  // namespace

TEST(fp8_gemv_decode_shapes) {
  std::mt19937 rng(801);
  // m 1..4; n 1, not a multiple of the 4-row block, crossing a 128-row scale block; k = 16 (one chunk),
  // 144 (an edge 128-block of 16), 2064 (129 chunks: more than one pass of the 128 lanes).
  for (bool block : {false, true}) {
    run(rng, 1, 1, 16, block, false, false, false, true);
    run(rng, 2, 70, 144, block, true, false, false, true);
    run(rng, 3, 129, 272, block, false, true, false, false);
    run(rng, 4, 200, 2064, block, true, true, false, false);
  }
  DeviceBuffer<float> f(64);
  DeviceBuffer<uint8_t> u(64);
  CHECK(!glm::cuda::fp8_gemv(Stream{}, f.get(), f.get(), {u.get(), f.get(), 1, 24, Fp8Scaling::PerChannel}, nullptr, 1, false).is_ok())
      << "k % 16 != 0 rejected";
  CHECK(!glm::cuda::fp8_gemv(Stream{}, f.get(), f.get(), {u.get(), f.get(), 1, 16, Fp8Scaling::PerChannel}, nullptr, 5, false).is_ok())
      << "m > 4 rejected";
  CHECK(!glm::cuda::fp8_gemv(Stream{}, f.get(), f.get(), {u.get(), nullptr, 1, 16, Fp8Scaling::PerChannel}, nullptr, 1, false).is_ok())
      << "missing scales rejected";
}

TEST(fp8_dequant_gemm_prefill_shapes) {
  std::mt19937 rng(802);
  // m 5 / 17 / 130 (one partial, several 64-row tiles); n not a multiple of 64, crossing a 128-row
  // block; k 144 / 272 (K steps of 64 with a partial last one, an edge 128-column block).
  for (bool block : {false, true}) {
    run(rng, 5, 70, 144, block, true, false, true, true);
    run(rng, 17, 129, 272, block, false, true, true, false);
    run(rng, 130, 65, 144, block, true, true, true, false);
  }
}
