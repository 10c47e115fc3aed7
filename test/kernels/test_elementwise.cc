// silu_mul and add_inplace (elementwise.cu) against double-precision references.
#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(silu_mul_and_add_inplace) {
  std::mt19937 rng(31);
  // Sizes: 1, odd, not a multiple of the block (the grid-stride loop past 1M elements is not exercised: too slow here).
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(1000), int64_t(5000)}) {
    const auto g = random_floats(rng, size_t(n), -8.0f, 8.0f);
    const auto u = random_floats(rng, size_t(n), -3.0f, 3.0f);
    std::vector<double> ref_silu(static_cast<size_t>(n)), ref_add(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double x = g[size_t(i)];
      ref_silu[size_t(i)] = x / (1.0 + std::exp(-x)) * double(u[size_t(i)]);
      ref_add[size_t(i)] = double(float(g[size_t(i)] + u[size_t(i)]));  // the fp32 sum, exactly
    }
    DeviceBuffer<float> d_g(g), d_u(u);
    // Budget: a few fp32 roundings (exp, divide, multiply): 4 ulps relative, plus a tiny absolute term
    // for products that cancel to near zero. The add is exact (one fp32 rounding, same as the ref).
    CHECK(glm::cuda::silu_mul(Stream{}, d_g.get(), d_u.get(), n).is_ok());
    if (device_ok("silu_mul")) expect_close("silu_mul", d_g.download(), ref_silu, 1e-12, 4.8e-7);
    d_g.upload(g);
    CHECK(glm::cuda::add_inplace(Stream{}, d_g.get(), d_u.get(), n).is_ok());
    if (device_ok("add_inplace")) expect_close("add_inplace", d_g.download(), ref_add, 0, 0);
  }
  DeviceBuffer<float> b(4);
  CHECK(!glm::cuda::silu_mul(Stream{}, nullptr, b.get(), 4).is_ok()) << "null rejected";
  CHECK(!glm::cuda::add_inplace(Stream{}, b.get(), b.get(), -1).is_ok()) << "negative size rejected";
}
