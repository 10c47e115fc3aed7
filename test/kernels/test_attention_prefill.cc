// attention_prefill against a float64 causal softmax over the paged cache (the CPU backend's
// attention: scores q·k * scale over positions 0..pos, softmax, weighted sum of V), for a mixed batch:
// one sequence with many rows (a prompt chunk after a cached prefix), one decode row, a short prompt
// from position 0, a row of the first sequence again after the others (rows not grouped), and a
// padding row. Pages are shuffled and shorter than the sequences. The rows that are plain decode
// tokens are also run through attention_decode: both must agree. Budget as attention_decode's test:
// |err| <= 2e-5 + 1e-4 |ref| (fp32 dot products and exp; __expf is exact on the harness, ~2 ulp on GPU).
#include <algorithm>
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
  const float* key(int64_t b, int64_t h, int64_t pos) const {
    const int64_t page = page_table[size_t(b * pages_per_seq + pos / layout.page_tokens)];
    return pool.data() + page * layout.page_floats() + (h * layout.page_tokens + pos % layout.page_tokens) * layout.head_dim;
  }
  const float* value(int64_t b, int64_t h, int64_t pos) const {
    return key(b, h, pos) + layout.n_kv_heads * layout.page_tokens * layout.head_dim;
  }
};

void check_config(std::mt19937& rng, int64_t n_heads, int64_t n_kv, int64_t d, int64_t page_tokens, bool all_seeds,
                  int64_t first_key = 0) {
  const int64_t batch = 3, max_len = 75;
  Cache c;
  c.pages_per_seq = (max_len + page_tokens - 1) / page_tokens;
  c.layout = {n_kv, d, page_tokens, batch * c.pages_per_seq + 2};
  std::vector<int32_t> ids(static_cast<size_t>(c.layout.n_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.page_table.assign(ids.begin(), ids.begin() + batch * c.pages_per_seq);
  c.pool = random_floats(rng, size_t(c.layout.n_pages * c.layout.page_floats()), -1.0f, 1.0f);

  std::vector<int32_t> seq, pos;
  for (int p = 30; p < 70; ++p) seq.push_back(0), pos.push_back(p);  // a chunk after a 30-token prefix
  seq.push_back(1), pos.push_back(74);                                  // a decode token, 3 tiles of keys
  for (int p = 0; p < 3; ++p) seq.push_back(2), pos.push_back(p);      // a short prompt
  seq.push_back(0), pos.push_back(5);                                   // sequence 0 again, out of order
  seq.push_back(1), pos.push_back(-1);                                  // padding
  const int64_t rows = int64_t(seq.size()), hd = n_heads * d, group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(d));
  const auto q = random_floats(rng, size_t(rows * hd), -1.5f, 1.5f);

  std::vector<double> ref(size_t(rows * hd), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (pos[size_t(r)] < 0) continue;
    const int64_t n = pos[size_t(r)] + 1;
    if (n <= first_key) continue;  // no key left: zeros
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t kvh = h / group;
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300, sum = 0;
      for (int64_t j = first_key; j < n; ++j) {
        const float* k = c.key(seq[size_t(r)], kvh, j);
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += double(q[size_t(r * hd + h * d + i)]) * k[i];
        s[size_t(j)] = dot * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      for (int64_t j = first_key; j < n; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
      for (int64_t j = first_key; j < n; ++j) {
        const float* v = c.value(seq[size_t(r)], kvh, j);
        for (int64_t i = 0; i < d; ++i) ref[size_t(r * hd + h * d + i)] += s[size_t(j)] / sum * v[i];
      }
    }
  }

  DeviceBuffer<float> d_pool(c.pool), d_q(q), d_out(size_t(rows * hd));
  DeviceBuffer<int32_t> d_pt(c.page_table), d_seq(seq), d_pos(pos);
  glm::cuda::PrefillAttentionArgs a;
  a.rows = rows;
  a.n_heads = n_heads;
  a.pages_per_seq = c.pages_per_seq;
  a.scale = scale;
  a.first_key = first_key;
  const std::string what = "attention_prefill heads " + std::to_string(n_heads) + "/" + std::to_string(n_kv) + " d=" +
                           std::to_string(d) + " page=" + std::to_string(page_tokens) + " first_key=" + std::to_string(first_key);
  std::vector<float> got;
  auto run = [&](uint64_t) {
    d_out.poison();
    CHECK(glm::cuda::attention_prefill(Stream{}, d_out.get(), d_q.get(), d_pool.get(), nullptr, c.layout, d_pt.get(), d_seq.get(),
                                       d_pos.get(), a).is_ok()) << what;
    if (!device_ok(what.c_str())) return;
    got = d_out.download();
    expect_close(what.c_str(), got, ref, 2e-5, 1e-4);
  };
  if (all_seeds) for_each_seed(run);
  else run(0);

  // The decode tokens (rows 39: seq 0 pos 69, 40: seq 1 pos 74, 43: seq 2 pos 2) through attention_decode.
  const std::vector<int64_t> picks = {39, 40, 43};
  std::vector<float> dq;
  std::vector<int32_t> lens, table;
  std::vector<double> from_prefill;
  for (int64_t r : picks) {
    dq.insert(dq.end(), q.begin() + r * hd, q.begin() + (r + 1) * hd);
    lens.push_back(pos[size_t(r)] + 1);
    const int32_t* row = c.page_table.data() + seq[size_t(r)] * c.pages_per_seq;
    table.insert(table.end(), row, row + c.pages_per_seq);
    for (int64_t i = 0; i < hd; ++i) from_prefill.push_back(got.empty() ? 0.0 : got[size_t(r * hd + i)]);
  }
  glm::cuda::DecodeAttentionArgs da;
  da.batch = int64_t(picks.size());
  da.n_heads = n_heads;
  da.pages_per_seq = c.pages_per_seq;
  da.max_len = max_len;
  da.n_splits = 2;
  da.scale = scale;
  da.first_key = first_key;
  DeviceBuffer<float> d_dq(dq), d_dout(dq.size()), d_ws(size_t(glm::cuda::attention_decode_workspace_floats(c.layout, da)));
  DeviceBuffer<int32_t> d_lens(lens), d_table(table);
  CHECK(glm::cuda::attention_decode(Stream{}, d_dout.get(), d_dq.get(), d_pool.get(), nullptr, c.layout, d_table.get(), d_lens.get(), da,
                                    d_ws.get(), int64_t(d_ws.size())).is_ok());
  if (device_ok("attention_decode twin")) expect_close((what + " == attention_decode").c_str(), d_dout.download(), from_prefill, 2e-5, 1e-4);
}

}  // namespace

TEST(attention_prefill_mixed_batch_matches_softmax_and_decode) {
  std::mt19937 rng(801);
  check_config(rng, 6, 2, 12, 16, true);   // group 3 (5 rows per block), head_dim 12 (not a multiple of 8)
  check_config(rng, 16, 1, 8, 5, false);   // group 16: 4 rows per block; 5-token pages
  check_config(rng, 2, 2, 64, 16, false);  // no GQA: 16 rows per block, the 40-row chunk spans 3 blocks
}

// The MTP layer's attention skips the keys below first_key (its slot 0 holds no pair): slot 0 only, and
// a first_key past a whole tile and a decode split (rows whose positions are all below it get zeros).
TEST(attention_prefill_and_decode_skip_keys_below_first_key) {
  std::mt19937 rng(802);
  check_config(rng, 6, 2, 12, 16, false, 1);
  check_config(rng, 4, 2, 16, 5, false, 41);
}

TEST(attention_prefill_rejects_bad_arguments) {
  DeviceBuffer<float> b(64);
  DeviceBuffer<int32_t> i(4);
  glm::cuda::KvLayout L{1, 8, 4, 1};
  glm::cuda::PrefillAttentionArgs a;
  a.rows = 1;
  a.n_heads = 17;
  a.pages_per_seq = 1;
  a.scale = 1.0f;
  CHECK(!glm::cuda::attention_prefill(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), i.get(), a).is_ok()) << "group 17";
  a.n_heads = 2;
  L.head_dim = 6;
  CHECK(!glm::cuda::attention_prefill(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), i.get(), a).is_ok()) << "head_dim 6";
  L.head_dim = 8;
  a.scale = 0.0f;
  CHECK(!glm::cuda::attention_prefill(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), i.get(), a).is_ok()) << "scale 0";
}
