// Small device helpers of the CUDA backend (issue 5): argmax_tokens against engine/sampler.cc's rule
// (exact), silu_mul against float64 silu(g) * u (fp32 exp and two roundings: 1e-6 relative + 1e-7),
// add_inplace, gather_rows and concat_cols (exact).
#include <cstring>
#include <limits>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

namespace {

int32_t ref_argmax(const float* v, int64_t n) {  // engine/sampler.cc argmax_token
  int32_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(v[i])) continue;
    if (best < 0 || v[i] > v[best]) best = int32_t(i);
  }
  return best;
}

}  // namespace

TEST(argmax_tokens_ties_nan_and_all_nan) {
  std::mt19937 rng(901);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int64_t vocab : {1, 31, 1000, 4099}) {
    const int64_t rows = 6;
    std::uniform_int_distribution<int> small(-3, 3);
    std::vector<float> logits(size_t(rows * vocab));
    for (auto& v : logits) v = float(small(rng));  // many ties on a handful of values
    float* r = logits.data();
    r[0] = nan;                                             // row 0: NaN first never wins
    for (int64_t i = 0; i < vocab; ++i) r[vocab + i] = nan; // row 1: all NaN -> -1
    if (vocab > 2) r[2 * vocab + vocab - 1] = inf, r[2 * vocab + 1] = inf;  // row 2: tie of +inf, lowest id
    if (vocab > 1) r[3 * vocab] = -0.0f, r[3 * vocab + 1] = 0.0f;          // row 3: -0 == +0
    for (int64_t i = 0; i < vocab; ++i) r[4 * vocab + i] = -inf;            // row 4: all -inf -> 0
    std::vector<int32_t> ref(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) ref[size_t(i)] = ref_argmax(r + i * vocab, vocab);
    DeviceBuffer<float> d_l(logits);
    DeviceBuffer<int32_t> d_t(static_cast<size_t>(rows));
    for_each_seed([&](uint64_t) {
      d_t.poison();
      CHECK(glm::cuda::argmax_tokens(Stream{}, d_t.get(), d_l.get(), rows, vocab).is_ok());
      if (device_ok("argmax_tokens")) CHECK(d_t.download() == ref) << "argmax_tokens vocab=" << vocab;
    });
  }
}

TEST(silu_mul_add_inplace_gather_rows_concat_cols) {
  std::mt19937 rng(902);
  const int64_t n = 1000;
  const auto g = random_floats(rng, size_t(n), -20.0f, 20.0f), u = random_floats(rng, size_t(n), -3.0f, 3.0f);
  std::vector<double> ref(static_cast<size_t>(n)), sum(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ref[size_t(i)] = double(g[size_t(i)]) / (1.0 + std::exp(-double(g[size_t(i)]))) * u[size_t(i)];
    sum[size_t(i)] = double(float(u[size_t(i)] + g[size_t(i)]));
  }
  DeviceBuffer<float> d_g(g), d_u(u), d_out(static_cast<size_t>(n));
  for_each_seed([&](uint64_t) {
    d_out.poison();
    CHECK(glm::cuda::silu_mul(Stream{}, d_out.get(), d_g.get(), d_u.get(), n).is_ok());
    if (device_ok("silu_mul")) expect_close("silu_mul", d_out.download(), ref, 1e-7, 1e-6);
    d_out.upload(u);
    CHECK(glm::cuda::add_inplace(Stream{}, d_out.get(), d_g.get(), n).is_ok());
    if (device_ok("add_inplace")) expect_close("add_inplace (exact fp32 sum)", d_out.download(), sum, 0, 0);
  });
  // gather_rows: 5 rows of 37 picked with a repeat and a padding index.
  const int64_t cols = 37, src_rows = 9;
  const auto x = random_floats(rng, size_t(src_rows * cols));
  const std::vector<int32_t> idx = {8, 0, 3, 3, -1};
  std::vector<double> want;
  for (int32_t i : idx)
    for (int64_t c = 0; c < cols; ++c) want.push_back(i < 0 ? 0.0 : double(x[size_t(i * cols + c)]));
  DeviceBuffer<float> d_x(x), d_rows(idx.size() * size_t(cols));
  DeviceBuffer<int32_t> d_idx(idx);
  for_each_seed([&](uint64_t) {
    d_rows.poison();
    CHECK(glm::cuda::gather_rows(Stream{}, d_rows.get(), d_x.get(), d_idx.get(), int64_t(idx.size()), cols).is_ok());
    if (device_ok("gather_rows")) expect_close("gather_rows (exact)", d_rows.download(), want, 0, 0);
  });
  // concat_cols: 6 rows of 37 + 11 columns side by side, the first input's columns first.
  const auto y = random_floats(rng, size_t(6 * 11));
  std::vector<double> cat;
  for (int64_t r = 0; r < 6; ++r) {
    for (int64_t c = 0; c < cols; ++c) cat.push_back(double(x[size_t(r * cols + c)]));
    for (int64_t c = 0; c < 11; ++c) cat.push_back(double(y[size_t(r * 11 + c)]));
  }
  DeviceBuffer<float> d_y(y), d_cat(cat.size());
  for_each_seed([&](uint64_t) {
    d_cat.poison();
    CHECK(glm::cuda::concat_cols(Stream{}, d_cat.get(), d_x.get(), d_y.get(), 6, cols, 11).is_ok());
    if (device_ok("concat_cols")) expect_close("concat_cols (exact)", d_cat.download(), cat, 0, 0);
  });
  CHECK(!glm::cuda::concat_cols(Stream{}, d_x.get(), d_x.get(), d_y.get(), 6, cols, 11).is_ok()) << "aliased output";
  CHECK(!glm::cuda::silu_mul(Stream{}, nullptr, d_g.get(), d_u.get(), n).is_ok());
  CHECK(!glm::cuda::argmax_tokens(Stream{}, nullptr, d_g.get(), 1, n).is_ok());
}
