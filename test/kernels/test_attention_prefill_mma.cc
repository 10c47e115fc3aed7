// attention_prefill_mma (tensor-core flash attention) over a mixed step: a 70-row chunk after a
// 30-token cached prefix (not a multiple of any tile), a decode row deep into its sequence (5 pages), a
// 3-token prompt, the first sequence again out of order, a padding row, and a 41-row prompt from
// position 0. Pages are shuffled and shorter than the sequences; group sizes 1..12, head_dim 16..128.
// Three references, three budgets:
//  (a) float64 attention over q, k as given and v rounded to bf16 — what the kernel computes except for
//      the S split's dropped lo*lo term (< 2^-16 of sum |q k|: ~1e-5 in logits here), rounding p to
//      bf16, and fp32 sums. l sums the rounded p, so out = sum p~_j v_j / sum p~_j with p~_j = p_j (1 + e_j),
//      |e_j| <= 2^-9: a convex combination whose weights move by <= 2 * 2^-9 relative, so
//      |out - ref| <= 2^-8 * max|v| = 2^-8 here (|v| <= 1), plus fp32 sums and exp2 (~1e-6).
//      Elementwise: atol 2^-8 + 1e-5. Normalised: out - ref = sum_j p_j (e_j - e) v_j, and with
//      independent roundings its norm relative to |out| is ~ rms(e) = 2^-9 / sqrt(3) ~ 1.1e-3 (measured
//      ~1.0e-3): rel L2 <= 2e-3.
//  (b) float64 attention over the fp32 inputs (the real error of the path): (a) plus v's own rounding,
//      another ~1e-3 relative: rel L2 <= 4e-3 (measured 1.5e-3 .. 1.8e-3).
//  (c) the fp32 attention_prefill kernel on the same step: same budget as (b).
// Padding rows must be exactly zero. Measured numbers are printed per configuration.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

namespace {

struct Cache {
  glm::cuda::KvLayout layout;
  std::vector<int32_t> page_table;
  int64_t pages_per_seq = 0;
  std::vector<float> pool;
  int64_t offset(int64_t b, int64_t h, int64_t pos) const {
    const int64_t page = page_table[size_t(b * pages_per_seq + pos / layout.page_tokens)];
    return page * layout.page_floats() + (h * layout.page_tokens + pos % layout.page_tokens) * layout.head_dim;
  }
};

float round_bf16(float x) { return from_bf16(to_bf16(x)); }

// Causal softmax attention in float64 over q [rows, n_heads * d] and the cache, v passed through `in_v`
// (identity or bf16 rounding).
template <class In>
std::vector<double> reference(const Cache& c, const std::vector<float>& q, const std::vector<int32_t>& seq,
                              const std::vector<int32_t>& pos, int64_t n_heads, double scale, In in_v) {
  const int64_t d = c.layout.head_dim, hd = n_heads * d, group = n_heads / c.layout.n_kv_heads;
  const int64_t rows = int64_t(seq.size());
  const int64_t v_off = c.layout.n_kv_heads * c.layout.page_tokens * d;
  std::vector<double> ref(size_t(rows * hd), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (pos[size_t(r)] < 0) continue;
    const int64_t n = pos[size_t(r)] + 1;
    for (int64_t h = 0; h < n_heads; ++h) {
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = c.pool.data() + c.offset(seq[size_t(r)], h / group, j);
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += double(q[size_t(r * hd + h * d + i)]) * double(k[i]);
        s[size_t(j)] = dot * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (int64_t j = 0; j < n; ++j) {
        const float* v = c.pool.data() + c.offset(seq[size_t(r)], h / group, j) + v_off;
        for (int64_t i = 0; i < d; ++i) ref[size_t(r * hd + h * d + i)] += s[size_t(j)] / sum * double(in_v(v[i]));
      }
    }
  }
  return ref;
}

struct Errors {
  double max_abs = 0, rel_l2 = 0;
};
Errors errors(const std::vector<float>& got, const std::vector<double>& ref) {
  Errors e;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(double(got[i]) - ref[i]);
    e.max_abs = std::max(e.max_abs, std::isnan(diff) ? 1e300 : diff);
    num += diff * diff;
    den += ref[i] * ref[i];
  }
  e.rel_l2 = std::sqrt(num / (den > 0 ? den : 1));
  return e;
}

// q_amp scales q: 8 makes logits of tens (sharp attention, as qk-normed models have), where a plain
// bf16 Q K^T would be off by ~0.1 in logits and fail (b).
void check_config(std::mt19937& rng, int64_t n_heads, int64_t n_kv, int64_t d, int64_t page_tokens, bool all_seeds,
                  float q_amp = 1.0f) {
  const int64_t n_seqs = 4, max_len = 150;
  Cache c;
  c.pages_per_seq = (max_len + page_tokens - 1) / page_tokens;
  c.layout = {n_kv, d, page_tokens, n_seqs * c.pages_per_seq + 3};
  std::vector<int32_t> ids(static_cast<size_t>(c.layout.n_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.page_table.assign(ids.begin(), ids.begin() + n_seqs * c.pages_per_seq);
  c.pool = random_floats(rng, size_t(c.layout.n_pages * c.layout.page_floats()), -1.0f, 1.0f);

  std::vector<int32_t> seq, pos;
  for (int p = 30; p < 100; ++p) seq.push_back(0), pos.push_back(p);  // a chunk after a 30-token prefix
  seq.push_back(1), pos.push_back(140);                                  // a decode row, 5 pages of keys
  for (int p = 0; p < 3; ++p) seq.push_back(2), pos.push_back(p);       // a short prompt
  seq.push_back(0), pos.push_back(5);                                    // sequence 0 again, out of order
  seq.push_back(1), pos.push_back(-1);                                   // padding
  for (int p = 0; p < 41; ++p) seq.push_back(3), pos.push_back(p);      // a prompt from position 0
  const int64_t rows = int64_t(seq.size()), hd = n_heads * d;
  const double scale = 1.0 / std::sqrt(double(d));
  const auto q = random_floats(rng, size_t(rows * hd), -1.5f * q_amp, 1.5f * q_amp);

  const auto ref_bf16 = reference(c, q, seq, pos, n_heads, double(float(scale)), round_bf16);
  const auto ref_exact = reference(c, q, seq, pos, n_heads, double(float(scale)), [](float x) { return x; });

  DeviceBuffer<float> d_pool(c.pool), d_q(q), d_out(size_t(rows * hd)), d_fp32(size_t(rows * hd));
  DeviceBuffer<int32_t> d_pt(c.page_table), d_seq(seq), d_pos(pos);
  glm::cuda::PrefillAttentionArgs a;
  a.rows = rows;
  a.n_heads = n_heads;
  a.pages_per_seq = c.pages_per_seq;
  a.scale = float(scale);
  char what[128];
  std::snprintf(what, sizeof what, "attention_prefill_mma heads %lld/%lld d=%lld page=%lld q*%g", (long long)n_heads, (long long)n_kv,
                (long long)d, (long long)page_tokens, double(q_amp));

  CHECK(glm::cuda::attention_prefill(Stream{}, d_fp32.get(), d_q.get(), d_pool.get(), nullptr, c.layout, d_pt.get(), d_seq.get(), d_pos.get(),
                                     a).is_ok());
  const std::vector<float> fp32 = device_ok("attention_prefill (fp32 twin)") ? d_fp32.download() : std::vector<float>();
  const std::vector<double> fp32_ref(fp32.begin(), fp32.end());

  auto run = [&](uint64_t seed) {
    d_out.poison();
    CHECK(glm::cuda::attention_prefill_mma(Stream{}, d_out.get(), d_q.get(), d_pool.get(), nullptr, c.layout, d_pt.get(), d_seq.get(),
                                           d_pos.get(), a).is_ok()) << what;
    if (!device_ok(what)) return;
    const std::vector<float> got = d_out.download();
    const std::string w(what);
    expect_close((w + " vs bf16-v reference").c_str(), got, ref_bf16, 1.0 / 256 + 1e-5, 0.0);
    expect_rel_l2((w + " vs bf16-v reference (rel L2)").c_str(), got, ref_bf16, 2e-3);
    expect_rel_l2((w + " vs fp32-input reference").c_str(), got, ref_exact, 4e-3);
    if (!fp32.empty()) expect_rel_l2((w + " vs attention_prefill").c_str(), got, fp32_ref, 4e-3);
    for (int64_t r = 0; r < rows; ++r) {
      if (pos[size_t(r)] >= 0) continue;
      for (int64_t i = 0; i < hd; ++i) CHECK(got[size_t(r * hd + i)] == 0.0f) << w << ": padding row " << r << " not zero";
    }
    if (seed <= 1) {
      const Errors eb = errors(got, ref_bf16), ee = errors(got, ref_exact), ef = errors(fp32, ref_exact);
      std::printf("    %s: vs bf16-v ref max %.2e relL2 %.2e; vs fp32 ref max %.2e relL2 %.2e (fp32 kernel: max %.2e)\n", what,
                  eb.max_abs, eb.rel_l2, ee.max_abs, ee.rel_l2, ef.max_abs);
    }
  };
  if (all_seeds) for_each_seed(run);
  else run(0);
}

}  // namespace

TEST(attention_prefill_mma_mixed_step_matches_references) {
  std::mt19937 rng(805);
  check_config(rng, 12, 1, 128, 16, true);  // group 12 (Air's): blocks start mid-row; 16-token pages
  check_config(rng, 8, 8, 64, 32, false);   // no GQA, head_dim 64
  check_config(rng, 16, 2, 64, 7, false);   // group 8; 7-token pages: a tile spans several pages
  check_config(rng, 6, 2, 32, 16, false);   // group 3, head_dim 32
  check_config(rng, 10, 2, 16, 5, false);   // group 5, head_dim 16 (the synthetic checkpoints')
  check_config(rng, 4, 2, 128, 64, false);  // group 2, head_dim 128
  check_config(rng, 8, 1, 128, 16, false, 8.0f);  // group 8, sharp attention (the S split's reason)
}

TEST(attention_prefill_mma_rejects_bad_arguments) {
  DeviceBuffer<float> b(64);
  DeviceBuffer<int32_t> i(4);
  glm::cuda::KvLayout L{1, 16, 4, 1};
  glm::cuda::PrefillAttentionArgs a;
  a.rows = 1;
  a.n_heads = 17;
  a.pages_per_seq = 1;
  a.scale = 1.0f;
  auto call = [&] { return glm::cuda::attention_prefill_mma(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), i.get(), a); };
  CHECK(!call().is_ok()) << "group 17";
  a.n_heads = 2;
  L.head_dim = 48;
  CHECK(!call().is_ok()) << "head_dim 48";
  CHECK(!glm::cuda::attention_prefill_mma_supports(48) && glm::cuda::attention_prefill_mma_supports(128));
  L.head_dim = 16;
  a.scale = 0.0f;
  CHECK(!call().is_ok()) << "scale 0";
  a.scale = 1.0f;
  CHECK(call().is_ok()) << "a valid call";  // (pool of 1 page, row 0 reads whatever is there)
}
