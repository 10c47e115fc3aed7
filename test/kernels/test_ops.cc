// Every kernel against a plain double-precision reference of the CPU backend's math
// (cpp/cpu/cpu_backend.cc), over shapes chosen to break assumptions: one row, odd sizes, sizes that
// are not multiples of the block or vector width, sequences that straddle cache pages, page tables that
// are not in order, more splits than the sequence has tiles. Each test runs under several harness
// scheduling seeds (kernel_test.h), with every output buffer poisoned before each launch.
#include <algorithm>
#include <numeric>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

namespace {

// rmsnorm_row of the CPU backend, in double.
void ref_rmsnorm(const double* x, const float* w, int64_t n, double eps, double* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = double(w[i]) * (x[i] * inv);
}

}  // namespace

TEST(embedding_gather_bf16_and_f32) {
  std::mt19937 rng(11);
  // hidden: 1 (scalar path), 7 and 130 (not a multiple of 8), 64 and 1000 (16-byte rows, vector path).
  for (int64_t hidden : {1, 7, 64, 130, 1000}) {
    const int64_t vocab = 37;
    const std::vector<int32_t> tokens = {0, 36, 5, 5, 17, 36, 2};
    const auto table_f = random_floats(rng, size_t(vocab * hidden), -4.0f, 4.0f);
    std::vector<uint16_t> table_b(table_f.size());
    for (size_t i = 0; i < table_f.size(); ++i) table_b[i] = to_bf16(table_f[i]);
    DeviceBuffer<float> d_tf(table_f);
    DeviceBuffer<uint16_t> d_tb(table_b);
    DeviceBuffer<int32_t> d_tok(tokens);
    DeviceBuffer<float> d_out(tokens.size() * size_t(hidden));
    const int64_t T = int64_t(tokens.size());
    std::vector<double> ref_b(size_t(T * hidden)), ref_f(size_t(T * hidden));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < hidden; ++i) {
        ref_b[size_t(t * hidden + i)] = from_bf16(table_b[size_t(tokens[size_t(t)] * hidden + i)]);
        ref_f[size_t(t * hidden + i)] = table_f[size_t(tokens[size_t(t)] * hidden + i)];
      }
    }
    for_each_seed([&](uint64_t) {
      d_out.poison();
      CHECK(glm::cuda::embedding_gather(Stream{}, d_out.get(), d_tb.get(), glm::cuda::TableType::BF16, vocab, hidden, d_tok.get(), T).is_ok());
      if (device_ok("embedding bf16")) expect_close("embedding bf16 (exact widening)", d_out.download(), ref_b, 0, 0);
      d_out.poison();
      CHECK(glm::cuda::embedding_gather(Stream{}, d_out.get(), d_tf.get(), glm::cuda::TableType::F32, vocab, hidden, d_tok.get(), T).is_ok());
      if (device_ok("embedding f32")) expect_close("embedding f32 (copy)", d_out.download(), ref_f, 0, 0);
    });
  }
}

TEST(embedding_gather_bad_token_is_loud_and_bad_args_rejected) {
  DeviceBuffer<float> table(std::vector<float>(8 * 4, 1.0f));
  DeviceBuffer<int32_t> tok(std::vector<int32_t>{1, 8, -1});
  DeviceBuffer<float> out(12);
  CHECK(glm::cuda::embedding_gather(Stream{}, out.get(), table.get(), glm::cuda::TableType::F32, 8, 4, tok.get(), 3).is_ok());
  if (device_ok("embedding bad token")) {
    const auto o = out.download();
    CHECK(o[0] == 1.0f && std::isnan(o[4]) && std::isnan(o[11])) << "ids outside the vocabulary give NaN rows";
  }
  CHECK(!glm::cuda::embedding_gather(Stream{}, nullptr, table.get(), glm::cuda::TableType::F32, 8, 4, tok.get(), 3).is_ok());
  CHECK(!glm::cuda::embedding_gather(Stream{}, out.get(), table.get(), glm::cuda::TableType::F32, 0, 4, tok.get(), 3).is_ok());
}

TEST(rmsnorm_plain_and_fused_residual) {
  std::mt19937 rng(12);
  const float eps = 1e-5f;
  // rows: 1 and odd counts; n: below a warp, odd, not a multiple of the block, GLM-4.5's hidden size.
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 31}, {5, 257}, {2, 1000}, {1, 5120}}) {
    const int64_t rows = shape.first, n = shape.second;  // (C++17 lambdas cannot capture structured bindings)
    const auto x = random_floats(rng, size_t(rows * n), -3.0f, 3.0f);
    const auto res = random_floats(rng, size_t(rows * n), -3.0f, 3.0f);
    const auto w = random_floats(rng, size_t(n), 0.5f, 1.5f);
    std::vector<double> ref(x.size()), ref_fused(x.size()), ref_res(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> xd(static_cast<size_t>(n)), sd(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        xd[size_t(i)] = x[size_t(r * n + i)];
        sd[size_t(i)] = double(float(x[size_t(r * n + i)] + res[size_t(r * n + i)]));  // the fp32 residual sum
        ref_res[size_t(r * n + i)] = sd[size_t(i)];
      }
      ref_rmsnorm(xd.data(), w.data(), n, eps, &ref[size_t(r * n)]);
      ref_rmsnorm(sd.data(), w.data(), n, eps, &ref_fused[size_t(r * n)]);
    }
    DeviceBuffer<float> d_x(x), d_w(w), d_out(x.size()), d_res(res.size());
    for_each_seed([&](uint64_t) {
      // Budget: fp32 sum of n squares vs a double sum — relative error of the scale ~ n * 2^-24 in the
      // worst case, far less in practice; 1e-5 relative + 1e-6 absolute is ~100 ulps of headroom.
      d_out.poison();
      CHECK(glm::cuda::rmsnorm(Stream{}, d_out.get(), d_x.get(), d_w.get(), rows, n, eps).is_ok());
      if (device_ok("rmsnorm")) expect_close("rmsnorm", d_out.download(), ref, 1e-6, 1e-5);
      d_out.poison();
      d_res.upload(res);
      CHECK(glm::cuda::add_rmsnorm(Stream{}, d_out.get(), d_res.get(), d_x.get(), d_w.get(), rows, n, eps).is_ok());
      if (device_ok("add_rmsnorm")) {
        expect_close("add_rmsnorm out", d_out.download(), ref_fused, 1e-6, 1e-5);
        expect_close("add_rmsnorm residual (exact fp32 sum)", d_res.download(), ref_res, 0, 0);
      }
    });
    // In place (out aliases x), as the engine does for q/k norms.
    DeviceBuffer<float> d_inplace(x);
    CHECK(glm::cuda::rmsnorm(Stream{}, d_inplace.get(), d_inplace.get(), d_w.get(), rows, n, eps).is_ok());
    if (device_ok("rmsnorm in place")) expect_close("rmsnorm in place", d_inplace.download(), ref, 1e-6, 1e-5);
  }
  DeviceBuffer<float> b(4);
  CHECK(!glm::cuda::add_rmsnorm(Stream{}, b.get(), b.get(), b.get(), b.get(), 1, 4, eps).is_ok()) << "aliasing residual rejected";
  CHECK(!glm::cuda::rmsnorm(Stream{}, b.get(), b.get(), b.get(), 1, 0, eps).is_ok()) << "n = 0 rejected";
}

TEST(qk_norm_rope_matches_cpu_math) {
  std::mt19937 rng(13);
  const float eps = 1e-5f;
  struct Shape { int64_t rows, nq, nkv, d, rot; bool norm; double theta; };
  // GLM-4.5 (d 128, rotary 64, qk-norm), Air (no qk-norm), an odd head count that leaves a warp of the
  // last block idle, a head_dim that is not a multiple of 32, full rotation, and no rotation at all.
  for (const Shape s : {Shape{3, 12, 2, 128, 64, true, 1e6}, Shape{2, 6, 1, 128, 64, false, 1e6},
                        Shape{1, 5, 2, 48, 16, true, 1e4}, Shape{4, 3, 3, 64, 64, true, 1e6},
                        Shape{2, 2, 1, 32, 0, true, 1e6}}) {
    const std::vector<int32_t> all_pos = {0, 1, 4097, 131071};  // up to GLM's 128K context
    std::vector<int32_t> pos(all_pos.begin(), all_pos.begin() + s.rows);
    if (s.rows == 2) pos = {7, 131071};
    const auto q = random_floats(rng, size_t(s.rows * s.nq * s.d), -2.0f, 2.0f);
    const auto k = random_floats(rng, size_t(s.rows * s.nkv * s.d), -2.0f, 2.0f);
    const auto qw = random_floats(rng, size_t(s.d), 0.5f, 1.5f), kw = random_floats(rng, size_t(s.d), 0.5f, 1.5f);
    const int64_t half = s.rot / 2;
    std::vector<double> inv_freq(size_t(std::max<int64_t>(half, 1)));
    for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = 1.0 / std::pow(s.theta, double(2 * i) / double(s.rot));
    // Reference: CpuBackend::qk_norm_rope — cos/sin of a double angle rounded to fp32, rotate_half.
    auto ref_heads = [&](const std::vector<float>& x, int64_t nh, const std::vector<float>& w) {
      std::vector<double> out(x.size());
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t h = 0; h < nh; ++h) {
          const size_t o = size_t((r * nh + h) * s.d);
          std::vector<double> v(static_cast<size_t>(s.d));
          for (int64_t i = 0; i < s.d; ++i) v[size_t(i)] = x[o + size_t(i)];
          if (s.norm) ref_rmsnorm(v.data(), w.data(), s.d, eps, v.data());
          for (int64_t i = 0; i < s.d; ++i) out[o + size_t(i)] = v[size_t(i)];
          for (int64_t i = 0; i < half; ++i) {
            const double a = double(pos[size_t(r)]) * inv_freq[size_t(i)];
            const double c = float(std::cos(a)), sn = float(std::sin(a));
            out[o + size_t(i)] = v[size_t(i)] * c - v[size_t(i + half)] * sn;
            out[o + size_t(i + half)] = v[size_t(i + half)] * c + v[size_t(i)] * sn;
          }
        }
      }
      return out;
    };
    const auto ref_q = ref_heads(q, s.nq, qw), ref_k = ref_heads(k, s.nkv, kw);
    DeviceBuffer<float> d_q(q.size()), d_k(k.size()), d_qw(qw), d_kw(kw);
    DeviceBuffer<int32_t> d_pos(pos);
    DeviceBuffer<double> d_freq(inv_freq);
    for_each_seed([&](uint64_t) {
      d_q.upload(q);
      d_k.upload(k);
      glm::cuda::QkRopeDims dims{s.rows, s.nq, s.nkv, s.d, s.rot};
      CHECK(glm::cuda::qk_norm_rope(Stream{}, d_q.get(), d_k.get(), s.norm ? d_qw.get() : nullptr, s.norm ? d_kw.get() : nullptr,
                                    d_pos.get(), d_freq.get(), dims, eps).is_ok());
      // Budget: the norm's fp32 sum (as rmsnorm) plus fp32 rounding of the rotation's two products.
      if (device_ok("qk_norm_rope")) {
        expect_close("qk_norm_rope q", d_q.download(), ref_q, 2e-6, 2e-5);
        expect_close("qk_norm_rope k", d_k.download(), ref_k, 2e-6, 2e-5);
      }
    });
  }
  DeviceBuffer<float> b(8);
  DeviceBuffer<int32_t> p(1);
  DeviceBuffer<double> f(1);
  CHECK(!glm::cuda::qk_norm_rope(Stream{}, b.get(), b.get(), nullptr, nullptr, p.get(), f.get(), {1, 1, 1, 8, 10}, 1e-5f).is_ok())
      << "rotary_dim > head_dim rejected";
  CHECK(!glm::cuda::qk_norm_rope(Stream{}, b.get(), b.get(), b.get(), nullptr, p.get(), f.get(), {1, 1, 1, 8, 4}, 1e-5f).is_ok())
      << "one norm weight without the other rejected";
}

namespace {

// A paged pool with a page table whose pages are out of order and interleaved between sequences.
struct PagedCache {
  glm::cuda::KvLayout layout;
  std::vector<int32_t> page_table;  // [batch, pages_per_seq]
  int64_t pages_per_seq = 0;
  std::vector<float> pool;
  float* key(int64_t page, int64_t h, int64_t off) {
    return pool.data() + page * layout.page_floats() + (h * layout.page_tokens + off) * layout.head_dim;
  }
  float* value(int64_t page, int64_t h, int64_t off) { return key(page, h, off) + layout.n_kv_heads * layout.page_tokens * layout.head_dim; }
  int32_t slot(int64_t b, int64_t pos) const {
    return int32_t(page_table[size_t(b * pages_per_seq + pos / layout.page_tokens)] * layout.page_tokens + pos % layout.page_tokens);
  }
};

PagedCache make_cache(std::mt19937& rng, int64_t batch, int64_t max_len, int64_t n_kv, int64_t d, int64_t page_tokens) {
  PagedCache c;
  c.pages_per_seq = (max_len + page_tokens - 1) / page_tokens;
  c.layout = {n_kv, d, page_tokens, batch * c.pages_per_seq + 3};  // spare pages nobody owns
  std::vector<int32_t> ids(static_cast<size_t>(c.layout.n_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.page_table.assign(ids.begin(), ids.begin() + batch * c.pages_per_seq);
  c.pool = random_floats(rng, size_t(c.layout.n_pages * c.layout.page_floats()), -1.0f, 1.0f);
  return c;
}

}  // namespace

TEST(kv_append_writes_head_major_pages) {
  std::mt19937 rng(14);
  for (auto [n_kv, d, page_tokens] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{2, 128, 16}, {3, 36, 5}, {1, 4, 256}}) {
    PagedCache c = make_cache(rng, 2, 40, n_kv, d, page_tokens);
    // Rows: sequence 0 positions 14..17 (straddling a page when page_tokens is 16), sequence 1 position
    // 39, and a padding row (slot -1) that must write nothing.
    std::vector<int32_t> slots = {c.slot(0, 14), c.slot(0, 15), c.slot(0, 16), c.slot(0, 17), c.slot(1, 39), -1};
    const int64_t rows = int64_t(slots.size());
    const auto k = random_floats(rng, size_t(rows * n_kv * d)), v = random_floats(rng, size_t(rows * n_kv * d));
    std::vector<float> expect = c.pool;
    PagedCache e = c;
    for (int64_t r = 0; r + 1 < rows; ++r) {
      const int64_t page = slots[size_t(r)] / page_tokens, off = slots[size_t(r)] % page_tokens;
      for (int64_t h = 0; h < n_kv; ++h) {
        std::memcpy(e.key(page, h, off), &k[size_t((r * n_kv + h) * d)], size_t(d) * 4);
        std::memcpy(e.value(page, h, off), &v[size_t((r * n_kv + h) * d)], size_t(d) * 4);
      }
    }
    std::vector<double> ref(e.pool.begin(), e.pool.end());
    DeviceBuffer<float> d_pool(c.pool.size()), d_k(k), d_v(v);
    DeviceBuffer<int32_t> d_slots(slots);
    for_each_seed([&](uint64_t) {
      d_pool.upload(c.pool);
      CHECK(glm::cuda::kv_append(Stream{}, d_pool.get(), nullptr, c.layout, d_k.get(), d_v.get(), d_slots.get(), rows).is_ok());
      if (device_ok("kv_append")) expect_close("kv_append pool (exact copy, nothing else touched)", d_pool.download(), ref, 0, 0);
    });
  }
  DeviceBuffer<float> b(64);
  DeviceBuffer<int32_t> s(1);
  CHECK(!glm::cuda::kv_append(Stream{}, b.get(), nullptr, {1, 6, 4, 1}, b.get(), b.get(), s.get(), 1).is_ok()) << "head_dim % 4 rejected";
}

TEST(attention_decode_split_gqa_matches_softmax_reference) {
  std::mt19937 rng(15);
  struct Shape { int64_t n_heads, n_kv, d, page_tokens; std::vector<int32_t> lens; std::vector<int64_t> splits; };
  const std::vector<Shape> shapes = {
      // group 6, pages of 16: lengths 1 (a lone key), 37 (tile and page straddled), 300 (many pages).
      {12, 2, 64, 16, {1, 37, 300}, {1, 3, 7, 64}},
      // GLM-4.5's group of 12 and head_dim 128 (47 KiB of shared memory), page of 256.
      {24, 2, 128, 256, {70, 257}, {1, 4}},
      // group 16 with head_dim 128: 51 KiB of shared memory, the opt-in path; odd page size.
      {16, 1, 128, 7, {33}, {2}},
      // MHA (group 1), head_dim 4.
      {3, 3, 4, 8, {5, 64}, {1, 5}},
      // Lengths on chunk boundaries (32-position chunks with 4 splits of the 120-position capacity
      // below): the chunk starting exactly at a sequence's end is empty, as is every later one.
      {4, 2, 8, 40, {32, 64, 96, 1}, {4}},
  };
  for (const auto& s : shapes) {
    const int64_t B = int64_t(s.lens.size());
    const int64_t max_len = *std::max_element(s.lens.begin(), s.lens.end());
    PagedCache c = make_cache(rng, B, max_len, s.n_kv, s.d, s.page_tokens);
    // Scores of a realistic spread (|q·k| * scale up to ~8) so the softmax is neither flat nor one-hot.
    const auto q = random_floats(rng, size_t(B * s.n_heads * s.d), -3.0f, 3.0f);
    const double scale = 1.0 / std::sqrt(double(s.d));
    const int64_t group = s.n_heads / s.n_kv;
    std::vector<double> ref(q.size());
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < s.n_heads; ++h) {
        const int64_t kvh = h / group, len = s.lens[size_t(b)];
        std::vector<double> sc(static_cast<size_t>(len));
        double mx = -1e300;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t page = c.page_table[size_t(b * c.pages_per_seq + j / s.page_tokens)];
          const float* kr = c.key(page, kvh, j % s.page_tokens);
          double dot = 0;
          for (int64_t i = 0; i < s.d; ++i) dot += double(q[size_t((b * s.n_heads + h) * s.d + i)]) * kr[i];
          sc[size_t(j)] = dot * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        for (auto& x : sc) sum += x = std::exp(x - mx);
        for (int64_t j = 0; j < len; ++j) {
          const int64_t page = c.page_table[size_t(b * c.pages_per_seq + j / s.page_tokens)];
          const float* vr = c.value(page, kvh, j % s.page_tokens);
          for (int64_t i = 0; i < s.d; ++i) ref[size_t((b * s.n_heads + h) * s.d + i)] += sc[size_t(j)] / sum * vr[i];
        }
      }
    }
    DeviceBuffer<float> d_pool(c.pool), d_q(q), d_out(q.size());
    DeviceBuffer<int32_t> d_pt(c.page_table), d_lens(s.lens);
    // Each split count with max_len = the longest sequence, then the largest with max_len = the page
    // table's capacity (the CUDA backend's graph-safe sizing): chunks past a sequence's end are empty
    // partials the combine must ignore (their part_o stays poisoned: reading it would show as NaN).
    std::vector<std::pair<int64_t, int64_t>> runs;
    for (int64_t splits : s.splits) runs.push_back({splits, max_len});
    runs.push_back({*std::max_element(s.splits.begin(), s.splits.end()), c.pages_per_seq * s.page_tokens});
    for (auto [splits, len_bound] : runs) {
      glm::cuda::DecodeAttentionArgs a{B, s.n_heads, c.pages_per_seq, len_bound, splits, float(scale)};
      const int64_t ws = glm::cuda::attention_decode_workspace_floats(c.layout, a);
      DeviceBuffer<float> d_ws(static_cast<size_t>(ws));
      for_each_seed([&](uint64_t) {
        d_out.poison();
        d_ws.poison();
        const auto st = glm::cuda::attention_decode(Stream{}, d_out.get(), d_q.get(), d_pool.get(), nullptr, c.layout, d_pt.get(),
                                                    d_lens.get(), a, d_ws.get(), ws);
        CHECK(st.is_ok()) << st.message();
        // Budget: fp32 dot products of length d and an fp32 online softmax vs double; outputs are convex
        // combinations of values in [-1, 1], so an absolute 2e-5 is ~100x fp32 rounding.
        if (device_ok("attention_decode")) expect_close("attention_decode", d_out.download(), ref, 2e-5, 1e-4);
      });
    }
  }
  DeviceBuffer<float> b(64);
  DeviceBuffer<int32_t> i(4);
  glm::cuda::KvLayout L{1, 8, 4, 2};
  glm::cuda::DecodeAttentionArgs a{1, 17, 2, 8, 1, 0.3f};
  CHECK(!glm::cuda::attention_decode(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), a, b.get(), 64).is_ok()) << "group of 17 rejected";
  a.n_heads = 2;
  a.max_len = 9;
  CHECK(!glm::cuda::attention_decode(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), a, b.get(), 64).is_ok()) << "max_len past the page table rejected";
  a.max_len = 8;
  CHECK(!glm::cuda::attention_decode(Stream{}, b.get(), b.get(), b.get(), nullptr, L, i.get(), i.get(), a, b.get(), 3).is_ok()) << "small workspace rejected";
}
