// BF16 and FP8 KV pages on the device (ops.h KvLayout, kv_rows.cuh) against the CPU backend's KvStorage,
// the reference of both the conversions and the page layout.
//
//  kv_append: the device pool after appending rows equals, byte for byte (elements and FP8 scales),
//    what KvStorage::write makes of the same rows, for every type, including rows the rule treats
//    specially (all zero, -0, NaN, +-inf, subnormal and near-overflow magnitudes, padding slots) and
//    every untouched byte. Budget: exact (same IEEE operations, same order).
//  kv_copy_page: copies positions [0, n) of one page to another in every layer, elements and scales,
//    and nothing else. Budget: exact.
//  attention_decode / attention_prefill / attention_prefill_mma over BF16 and FP8 pages: (1) bit for bit
//    the F32 kernel run over an F32 pool holding the decoded values (KvStorage::read: bf16 widened, FP8
//    code * scale in fp32) — the narrow kernels decode the same way and then run the F32 math; (2) within
//    the F32 kernels' budgets of a float64 reference over the decoded values (decode / prefill: |err| <=
//    2e-5 + 1e-4 |ref|; flash: max 2^-8 + 1e-5, the bf16 V / P rounding of test_attention_prefill_mma.cc);
//    (3) the format's own error, against a float64 reference over the unquantized values the pages were
//    written from (q in +-1.5, each K/V row uniform in +-m with m in [0.25, 4]): rel L2 budget 6e-3 for
//    BF16 and 8e-2 for FP8. Why: rounding to p significant bits (nearest, mantissas spread log-uniformly)
//    leaves a relative error of rms eps = 2^(1-p) sqrt(E[1/m^2] / 12) ~ 0.21 * 2^(1-p): BF16 (p = 8)
//    1.7e-3, E4M3 (p = 4) 2.6e-2 (FP8's per-row scale only keeps the row's largest value exact and
//    nothing saturating). It reaches the output once through V (~eps of the output's norm) and once
//    through the scores, whose absolute error is ~rms(q) rms(k) eps (the 1/sqrt(d) scale cancels the dot
//    product's sqrt(d)) = 1.2 eps here: ~eps sqrt(1 + 1.2^2) = 1.6 eps in all, 2.7e-3 and 4.2e-2 expected.
//    The budgets are twice that (measured on the harness: BF16 1.8e-3 .. 2.8e-3, FP8 3.1e-2 .. 4.6e-2).
// Shapes: pages of 1, 5, 16 and 64 positions, head_dim 16..128 (36: rows that are not 16-byte multiples,
// so the 4-byte copy path runs), GQA groups 1..12, lengths crossing pages, shuffled page tables.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>

#include "cpu/kv_storage.h"
#include "engine/config.h"
#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::KvElem;
using glm::cuda::KvLayout;
using glm::cuda::Stream;

namespace {

glm::KvType host_type(KvElem t) { return t == KvElem::F32 ? glm::KvType::F32 : t == KvElem::BF16 ? glm::KvType::BF16 : glm::KvType::FP8; }
const char* type_name(KvElem t) { return t == KvElem::F32 ? "f32" : t == KvElem::BF16 ? "bf16" : "fp8"; }

int64_t row_index(int64_t page, int which, int64_t head, int64_t pos, const KvLayout& L) {
  return ((page * 2 + which) * L.n_kv_heads + head) * L.page_tokens + pos;
}

// One layer of KV pages kept by the CPU's KvStorage, and the same pages in the device layout.
struct HostPool {
  std::unique_ptr<glm::cpu::KvStorage> st;
  KvLayout L;
  std::vector<float> source;  // F32 device layout: the values last written to each row (before conversion)

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out(size_t(L.n_pages * L.page_bytes()));
    for (int64_t p = 0; p < L.n_pages; ++p)
      for (int w = 0; w < 2; ++w)
        for (int64_t h = 0; h < L.n_kv_heads; ++h)
          std::memcpy(out.data() + row_index(p, w, h, 0, L) * L.row_bytes(), st->rows(0, glm::PageId(p), w, h),
                      size_t(L.page_tokens * L.row_bytes()));
    return out;
  }
  std::vector<float> scales() const {
    std::vector<float> out(size_t(std::max<int64_t>(1, L.n_pages * L.page_scales())), 0.0f);
    if (L.type != KvElem::FP8) return out;
    for (int64_t p = 0; p < L.n_pages; ++p)
      for (int w = 0; w < 2; ++w)
        for (int64_t h = 0; h < L.n_kv_heads; ++h)
          std::memcpy(out.data() + row_index(p, w, h, 0, L), st->scales(0, glm::PageId(p), w, h), size_t(L.page_tokens) * 4);
    return out;
  }
  // The values the cache holds, as KvStorage::read gives them, in the F32 device layout.
  std::vector<float> decoded() const {
    std::vector<float> out(size_t(L.n_pages * L.page_floats()));
    for (int64_t p = 0; p < L.n_pages; ++p)
      for (int w = 0; w < 2; ++w)
        for (int64_t h = 0; h < L.n_kv_heads; ++h)
          for (int64_t pos = 0; pos < L.page_tokens; ++pos)
            st->read(0, glm::PageId(p), pos, w, h, out.data() + row_index(p, w, h, pos, L) * L.head_dim);
    return out;
  }
  void write(int64_t page, int which, int64_t head, int64_t pos, const float* row) {
    st->write(0, glm::PageId(page), pos, which, head, row);
    std::memcpy(source.data() + row_index(page, which, head, pos, L) * L.head_dim, row, size_t(L.head_dim) * 4);
  }
};

HostPool make_pool(KvElem t, int64_t n_kv, int64_t d, int64_t page_tokens, int64_t n_pages) {
  HostPool hp;
  hp.L = KvLayout{n_kv, d, page_tokens, n_pages, t};
  glm::ModelConfig cfg;
  cfg.num_hidden_layers = 1;
  cfg.num_key_value_heads = n_kv;
  cfg.head_dim = d;
  cfg.max_position_embeddings = page_tokens * n_pages;
  glm::KvPoolRequest req;
  req.type = host_type(t);
  req.page_tokens = page_tokens;
  req.bytes = glm::kv_page_bytes(req.type, 1, n_kv, d, page_tokens) * uint64_t(n_pages);
  const glm::Status st = glm::cpu::KvStorage::create(cfg, req, &hp.st);
  CHECK(st.is_ok() && hp.st->spec().n_pages == n_pages) << st.message();
  // The device layout's byte count is the engine's (kv_page_bytes counts elements and FP8 scales).
  CHECK(uint64_t(hp.L.page_bytes() + 4 * hp.L.page_scales()) == req.bytes / uint64_t(n_pages)) << "page bytes";
  hp.source.assign(size_t(n_pages * hp.L.page_floats()), 0.0f);
  return hp;
}

// Every row of every page written once with random values of a random magnitude per row (so FP8's
// per-row scales span decades), through KvStorage::write.
void fill_pool(std::mt19937& rng, HostPool& hp, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> mag(0.25f, 4.0f);
  std::vector<float> row(size_t(hp.L.head_dim));
  for (int64_t p = 0; p < hp.L.n_pages; ++p)
    for (int w = 0; w < 2; ++w)
      for (int64_t h = 0; h < hp.L.n_kv_heads; ++h)
        for (int64_t pos = 0; pos < hp.L.page_tokens; ++pos) {
          const float m = mag(rng);
          row = random_floats(rng, row.size(), lo * m, hi * m);
          hp.write(p, w, h, pos, row.data());
        }
}

struct DevicePool {
  DeviceBuffer<uint8_t> data;
  DeviceBuffer<float> scales;
  explicit DevicePool(const HostPool& hp) : data(hp.bytes()), scales(hp.scales()) {}
  float* sc() const { return scales.get(); }
};

bool same_bits(const char* what, const void* a, const void* b, size_t bytes) {
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < bytes; ++i) {
    if (x[i] != y[i]) {
      CHECK(false) << what << ": first difference at byte " << i << " of " << bytes << " (" << int(x[i]) << " vs " << int(y[i]) << ")";
      return false;
    }
  }
  return true;
}

double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) num += (got[i] - ref[i]) * (got[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

double format_budget(KvElem t) { return t == KvElem::BF16 ? 6e-3 : 8e-2; }

// Causal softmax attention in float64: row r of q ([rows, n_heads * d]) attends to positions
// 0..pos[r] of sequence seq[r] through page_table (pages_per_seq wide) in `pool` (F32 device layout).
std::vector<double> reference(const KvLayout& L, const std::vector<float>& pool, const std::vector<int32_t>& page_table,
                              int64_t pages_per_seq, const std::vector<float>& q, const std::vector<int32_t>& seq,
                              const std::vector<int32_t>& pos, int64_t n_heads, bool v_bf16 = false) {
  const int64_t d = L.head_dim, hd = n_heads * d, group = n_heads / L.n_kv_heads, rows = int64_t(seq.size());
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> ref(size_t(rows * hd), 0.0);
  auto at = [&](int64_t s, int w, int64_t h, int64_t p) {
    const int64_t page = page_table[size_t(s * pages_per_seq + p / L.page_tokens)];
    return pool.data() + row_index(page, w, h, p % L.page_tokens, L) * d;
  };
  for (int64_t r = 0; r < rows; ++r) {
    if (pos[size_t(r)] < 0) continue;
    const int64_t n = pos[size_t(r)] + 1;
    for (int64_t h = 0; h < n_heads; ++h) {
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = at(seq[size_t(r)], 0, h / group, j);
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += double(q[size_t(r * hd + h * d + i)]) * double(k[i]);
        s[size_t(j)] = dot * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int64_t j = 0; j < n; ++j) {
        const float* v = at(seq[size_t(r)], 1, h / group, j);
        for (int64_t i = 0; i < d; ++i) {
          const double vi = v_bf16 ? double(from_bf16(to_bf16(v[i]))) : double(v[i]);
          ref[size_t(r * hd + h * d + i)] += s[size_t(j)] / sum * vi;
        }
      }
    }
  }
  return ref;
}

}  // namespace

TEST(kv_append_bf16_fp8_bit_identical_to_cpu_kv_storage) {
  std::mt19937 rng(91);
  struct Shape { int64_t n_kv, d, page_tokens, n_pages; };
  for (KvElem t : {KvElem::F32, KvElem::BF16, KvElem::FP8}) {
    for (const Shape& s : std::vector<Shape>{{2, 128, 16, 5}, {3, 36, 5, 6}, {1, 4, 1, 12}, {2, 16, 64, 2}}) {
      HostPool hp = make_pool(t, s.n_kv, s.d, s.page_tokens, s.n_pages);
      fill_pool(rng, hp);
      // Rows to append: random magnitudes, plus the rows the FP8 rule treats specially.
      const int64_t rows = 12, w = s.n_kv * s.d;
      std::vector<float> k(size_t(rows * w)), v(size_t(rows * w));
      std::uniform_real_distribution<float> e10(-6.0f, 4.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int which = 0; which < 2; ++which) {
          float* x = (which ? v.data() : k.data()) + r * w;
          const float m = std::pow(10.0f, e10(rng));
          auto rnd = random_floats(rng, size_t(w), -m, m);
          std::copy(rnd.begin(), rnd.end(), x);
          switch (r) {
            case 0: std::fill(x, x + w, 0.0f); break;                      // zero row: scale 0
            case 1: std::fill(x, x + w, -0.0f); break;                     // negative zeros keep their sign
            case 2: x[1] = std::nanf(""), x[w - 1] = -std::nanf(""); break;  // NaN -> 0x7f, the rest scaled
            case 3: x[0] = INFINITY, x[2] = -INFINITY; break;              // amax inf: unscaled, saturated, scale 1
            case 4: for (int64_t i = 0; i < w; ++i) x[i] *= 1e-39f; break;  // subnormal amax: scale underflows
            case 5: for (int64_t i = 0; i < w; ++i) x[i] = x[i] / m * 3e38f; break;  // near fp32 overflow
            default: break;
          }
        }
      }
      // Slots: distinct (page, position) pairs, one padding row (-1) and one past the pool (skipped).
      std::vector<int32_t> all(size_t(s.n_pages * s.page_tokens));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<int32_t> slots(all.begin(), all.begin() + std::min<int64_t>(rows, int64_t(all.size())));
      while (int64_t(slots.size()) < rows) slots.push_back(-1);
      slots[7] = -1;
      slots[8] = int32_t(s.n_pages * s.page_tokens);
      const std::vector<uint8_t> before = hp.bytes();
      const std::vector<float> before_sc = hp.scales();
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t slot = slots[size_t(r)];
        if (slot < 0 || slot >= s.n_pages * s.page_tokens) continue;
        for (int64_t h = 0; h < s.n_kv; ++h) {
          hp.write(slot / s.page_tokens, 0, h, slot % s.page_tokens, k.data() + r * w + h * s.d);
          hp.write(slot / s.page_tokens, 1, h, slot % s.page_tokens, v.data() + r * w + h * s.d);
        }
      }
      const std::vector<uint8_t> want = hp.bytes();
      const std::vector<float> want_sc = hp.scales();
      const std::string what = std::string("kv_append ") + type_name(t) + " kv " + std::to_string(s.n_kv) + " d " +
                               std::to_string(s.d) + " page " + std::to_string(s.page_tokens);
      DeviceBuffer<uint8_t> d_pool(before);
      DeviceBuffer<float> d_sc(before_sc), d_k(k), d_v(v);
      DeviceBuffer<int32_t> d_slots(slots);
      for_each_seed([&](uint64_t) {
        d_pool.upload(before);
        d_sc.upload(before_sc);
        const glm::Status st = glm::cuda::kv_append(Stream{}, d_pool.get(), d_sc.get(), hp.L, d_k.get(), d_v.get(), d_slots.get(), rows);
        CHECK(st.is_ok()) << what << ": " << st.message();
        if (!device_ok(what.c_str())) return;
        const auto got = d_pool.download();
        const auto got_sc = d_sc.download();
        same_bits((what + " elements").c_str(), got.data(), want.data(), want.size());
        same_bits((what + " scales").c_str(), got_sc.data(), want_sc.data(), want_sc.size() * 4);
      });
    }
  }
  DeviceBuffer<uint8_t> b(256);
  DeviceBuffer<float> f(64);
  DeviceBuffer<int32_t> i(1);
  const KvLayout fp8{1, 8, 4, 1, KvElem::FP8};
  CHECK(!glm::cuda::kv_append(Stream{}, b.get(), nullptr, fp8, f.get(), f.get(), i.get(), 1).is_ok()) << "FP8 without scales rejected";
}

TEST(kv_copy_page_copies_elements_and_scales_of_every_layer) {
  std::mt19937 rng(92);
  struct Shape { int64_t n_kv, d, page_tokens, n; };
  for (KvElem t : {KvElem::F32, KvElem::BF16, KvElem::FP8}) {
    for (const Shape& s : std::vector<Shape>{{2, 128, 16, 11}, {3, 36, 5, 5}, {1, 4, 1, 1}, {2, 16, 64, 40}}) {
      const int64_t layers = 3, n_pages = 4;
      const KvLayout L{s.n_kv, s.d, s.page_tokens, n_pages, t};
      // Random bytes for the elements and random scales: the copy must move them untouched.
      std::vector<uint8_t> pool(size_t(layers * n_pages * L.page_bytes()));
      for (auto& x : pool) x = uint8_t(rng());
      std::vector<float> sc = random_floats(rng, size_t(std::max<int64_t>(1, layers * n_pages * L.page_scales())));
      const int32_t src = 2, dst = 1;
      std::vector<uint8_t> want = pool;
      std::vector<float> want_sc = sc;
      for (int64_t l = 0; l < layers; ++l)
        for (int w = 0; w < 2; ++w)
          for (int64_t h = 0; h < s.n_kv; ++h) {
            const int64_t rs = row_index(src, w, h, 0, L), rd = row_index(dst, w, h, 0, L);
            std::memcpy(want.data() + l * n_pages * L.page_bytes() + rd * L.row_bytes(),
                        pool.data() + l * n_pages * L.page_bytes() + rs * L.row_bytes(), size_t(s.n * L.row_bytes()));
            if (t == KvElem::FP8) {
              std::memcpy(want_sc.data() + l * n_pages * L.page_scales() + rd, sc.data() + l * n_pages * L.page_scales() + rs,
                          size_t(s.n) * 4);
            }
          }
      DeviceBuffer<uint8_t> d_pool(pool);
      DeviceBuffer<float> d_sc(sc);
      const std::string what = std::string("kv_copy_page ") + type_name(t) + " d " + std::to_string(s.d) + " page " +
                               std::to_string(s.page_tokens) + " n " + std::to_string(s.n);
      for_each_seed([&](uint64_t) {
        d_pool.upload(pool);
        d_sc.upload(sc);
        const glm::Status st = glm::cuda::kv_copy_page(Stream{}, d_pool.get(), d_sc.get(), L, layers, src, dst, s.n);
        CHECK(st.is_ok()) << what << ": " << st.message();
        if (!device_ok(what.c_str())) return;
        const auto got = d_pool.download();
        const auto got_sc = d_sc.download();
        same_bits((what + " elements").c_str(), got.data(), want.data(), want.size());
        same_bits((what + " scales").c_str(), got_sc.data(), want_sc.data(), want_sc.size() * 4);
      });
    }
  }
  DeviceBuffer<uint8_t> b(1024);
  const KvLayout L{1, 8, 4, 2, KvElem::BF16};
  CHECK(!glm::cuda::kv_copy_page(Stream{}, b.get(), nullptr, L, 1, 0, 2, 4).is_ok()) << "page id past the pool rejected";
  CHECK(!glm::cuda::kv_copy_page(Stream{}, b.get(), nullptr, L, 1, 0, 1, 5).is_ok()) << "n past the page rejected";
}

namespace {

struct Attn {
  KvElem type;
  HostPool hp;
  std::vector<int32_t> page_table;
  int64_t pps = 0;
  std::vector<float> decoded;
  std::unique_ptr<DevicePool> narrow;
  std::unique_ptr<DeviceBuffer<float>> f32;  // the decoded values as an F32 pool
  KvLayout f32_layout;
};

// A pool of `seqs` sequences of up to max_len positions (pages shuffled, two spare pages nobody owns).
Attn make_attn(std::mt19937& rng, KvElem t, int64_t n_kv, int64_t d, int64_t page_tokens, int64_t seqs, int64_t max_len) {
  Attn a{t, make_pool(t, n_kv, d, page_tokens, seqs * ((max_len + page_tokens - 1) / page_tokens) + 2)};
  a.pps = (max_len + page_tokens - 1) / page_tokens;
  fill_pool(rng, a.hp);
  std::vector<int32_t> ids(static_cast<size_t>(a.hp.L.n_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  a.page_table.assign(ids.begin(), ids.begin() + seqs * a.pps);
  a.decoded = a.hp.decoded();
  a.narrow = std::make_unique<DevicePool>(a.hp);
  a.f32 = std::make_unique<DeviceBuffer<float>>(a.decoded);
  a.f32_layout = a.hp.L;
  a.f32_layout.type = KvElem::F32;
  return a;
}

std::string shape_name(const char* op, KvElem t, int64_t n_heads, const KvLayout& L) {
  return std::string(op) + " " + type_name(t) + " heads " + std::to_string(n_heads) + "/" + std::to_string(L.n_kv_heads) + " d " +
         std::to_string(L.head_dim) + " page " + std::to_string(L.page_tokens);
}

}  // namespace

TEST(attention_decode_bf16_fp8_pages_equal_f32_kernel_on_decoded_values) {
  std::mt19937 rng(93);
  struct Case { int64_t n_heads, n_kv, d, page_tokens; std::vector<int32_t> lens; int64_t splits; };
  const std::vector<Case> cases = {
      {24, 2, 128, 16, {1, 37, 300}, 4},  // GLM-4.5's group 12 at head_dim 128, a lone key, many pages
      {12, 2, 64, 5, {70, 33}, 3},        // group 6, 5-position pages
      {3, 3, 36, 1, {5, 9}, 2},           // no GQA, one-position pages, 36-element rows (4-byte copies)
      {8, 1, 16, 64, {65, 130}, 2},       // group 8, 64-position pages, FP8 rows of exactly 16 bytes
  };
  for (KvElem t : {KvElem::BF16, KvElem::FP8}) {
    for (const Case& c : cases) {
      const int64_t B = int64_t(c.lens.size()), max_len = *std::max_element(c.lens.begin(), c.lens.end());
      Attn a = make_attn(rng, t, c.n_kv, c.d, c.page_tokens, B, max_len);
      const auto q = random_floats(rng, size_t(B * c.n_heads * c.d), -1.5f, 1.5f);
      std::vector<int32_t> seq(static_cast<size_t>(B)), pos(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) seq[size_t(b)] = int32_t(b), pos[size_t(b)] = c.lens[size_t(b)] - 1;
      const auto ref = reference(a.hp.L, a.decoded, a.page_table, a.pps, q, seq, pos, c.n_heads);
      const auto src_ref = reference(a.hp.L, a.hp.source, a.page_table, a.pps, q, seq, pos, c.n_heads);
      // max_len = the table's capacity, as the CUDA backend passes it: chunks past an end stay empty.
      glm::cuda::DecodeAttentionArgs args{B, c.n_heads, a.pps, a.pps * c.page_tokens, c.splits, float(1.0 / std::sqrt(double(c.d)))};
      const int64_t ws = glm::cuda::attention_decode_workspace_floats(a.hp.L, args);
      DeviceBuffer<float> d_q(q), d_out(q.size()), d_out32(q.size()), d_ws(static_cast<size_t>(ws));
      DeviceBuffer<int32_t> d_pt(a.page_table), d_lens(c.lens);
      const std::string what = shape_name("attention_decode", t, c.n_heads, a.hp.L);
      double format_err = 0;
      for_each_seed([&](uint64_t) {
        d_out.poison(), d_out32.poison();
        glm::Status st = glm::cuda::attention_decode(Stream{}, d_out.get(), d_q.get(), a.narrow->data.get(), a.narrow->sc(), a.hp.L,
                                                     d_pt.get(), d_lens.get(), args, d_ws.get(), ws);
        CHECK(st.is_ok()) << what << ": " << st.message();
        st = glm::cuda::attention_decode(Stream{}, d_out32.get(), d_q.get(), a.f32->get(), nullptr, a.f32_layout, d_pt.get(),
                                         d_lens.get(), args, d_ws.get(), ws);
        CHECK(st.is_ok()) << what << " (f32 twin): " << st.message();
        if (!device_ok(what.c_str())) return;
        const auto got = d_out.download(), twin = d_out32.download();
        same_bits((what + " == f32 kernel on the decoded pool").c_str(), got.data(), twin.data(), got.size() * 4);
        expect_close((what + " vs float64 on decoded values").c_str(), got, ref, 2e-5, 1e-4);
        format_err = rel_l2(got, src_ref);
        CHECK(format_err <= format_budget(t)) << what << ": rel L2 vs the unquantized values " << format_err << " (budget "
                                              << format_budget(t) << ")";
      });
      std::printf("    %s: rel L2 vs the unquantized values %.2e (budget %.0e)\n", what.c_str(), format_err, format_budget(t));
    }
  }
}

namespace {

// The mixed step of test_attention_prefill.cc (a shorter chunk: the harness runs mma slowly): a chunk after a cached prefix, a decode row deep in its
// sequence, a short prompt, a row of the first sequence out of order, a padding row.
void mixed_rows(std::vector<int32_t>& seq, std::vector<int32_t>& pos) {
  for (int p = 30; p < 52; ++p) seq.push_back(0), pos.push_back(p);
  seq.push_back(1), pos.push_back(74);
  for (int p = 0; p < 3; ++p) seq.push_back(2), pos.push_back(p);
  seq.push_back(0), pos.push_back(5);
  seq.push_back(1), pos.push_back(-1);
}

}  // namespace

TEST(attention_prefill_and_flash_bf16_fp8_pages_equal_f32_kernels_on_decoded_values) {
  std::mt19937 rng(94);
  struct Case { int64_t n_heads, n_kv, d, page_tokens; bool flash; };
  const std::vector<Case> cases = {
      {24, 2, 128, 16, true},  // group 12, head_dim 128
      {6, 2, 64, 5, true},     // group 3, 5-position pages
      {3, 3, 32, 1, true},     // no GQA, one-position pages
      {8, 1, 16, 64, true},    // group 8, 64-position pages, 16-byte FP8 rows
      {4, 2, 36, 5, false},    // 36-element rows (4-byte copies): the fp32 kernel only (flash needs 16..128 powers of 2)
  };
  std::vector<int32_t> seq, pos;
  mixed_rows(seq, pos);
  const int64_t rows = int64_t(seq.size());
  for (KvElem t : {KvElem::BF16, KvElem::FP8}) {
    for (const Case& c : cases) {
      Attn a = make_attn(rng, t, c.n_kv, c.d, c.page_tokens, 3, 75);
      const int64_t hd = c.n_heads * c.d;
      const auto q = random_floats(rng, size_t(rows * hd), -1.5f, 1.5f);
      const auto ref = reference(a.hp.L, a.decoded, a.page_table, a.pps, q, seq, pos, c.n_heads);
      const auto ref_vbf16 = reference(a.hp.L, a.decoded, a.page_table, a.pps, q, seq, pos, c.n_heads, true);
      double max_v = 0;
      for (float x : a.decoded) max_v = std::max(max_v, double(std::fabs(x)));
      glm::cuda::PrefillAttentionArgs args;
      args.rows = rows;
      args.n_heads = c.n_heads;
      args.pages_per_seq = a.pps;
      args.scale = float(1.0 / std::sqrt(double(c.d)));
      DeviceBuffer<float> d_q(q), d_out(q.size()), d_out32(q.size());
      DeviceBuffer<int32_t> d_pt(a.page_table), d_seq(seq), d_pos(pos);
      for (int flash = 0; flash <= int(c.flash); ++flash) {
        const std::string what = shape_name(flash ? "attention_prefill_mma" : "attention_prefill", t, c.n_heads, a.hp.L);
        auto run = flash ? glm::cuda::attention_prefill_mma : glm::cuda::attention_prefill;
        // Every scheduling seed for the first shape, one for the others (the harness runs mma.sync slowly).
        auto check = [&](uint64_t) {
          d_out.poison(), d_out32.poison();
          glm::Status st = run(Stream{}, d_out.get(), d_q.get(), a.narrow->data.get(), a.narrow->sc(), a.hp.L, d_pt.get(),
                               d_seq.get(), d_pos.get(), args);
          CHECK(st.is_ok()) << what << ": " << st.message();
          st = run(Stream{}, d_out32.get(), d_q.get(), a.f32->get(), nullptr, a.f32_layout, d_pt.get(), d_seq.get(), d_pos.get(), args);
          CHECK(st.is_ok()) << what << " (f32 twin): " << st.message();
          if (!device_ok(what.c_str())) return;
          const auto got = d_out.download(), twin = d_out32.download();
          same_bits((what + " == f32 kernel on the decoded pool").c_str(), got.data(), twin.data(), got.size() * 4);
          if (flash) {
            // test_attention_prefill_mma.cc's budget (a): the bf16 rounding of P and V, 2^-8 of max |v|.
            expect_close((what + " vs float64 on decoded values, V in bf16").c_str(), got, ref_vbf16, std::ldexp(max_v, -8) + 1e-5, 0);
          } else {
            expect_close((what + " vs float64 on decoded values").c_str(), got, ref, 2e-5, 1e-4);
          }
        };
        if (&c == &cases[0]) for_each_seed(check);
        else check(0);
      }
    }
  }
}
