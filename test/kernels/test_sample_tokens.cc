// sample_tokens against the CPU sampler itself (engine/sampler.cc: penalize_logit, then choose_token with
// the same u), over random rows of awkward vocab sizes (1 .. 4099 and two rows of 151552), every option
// combination, and the edge cases (temperature 0, all NaN / -inf, +inf ties, ties at the top-k and top-p
// cuts, -0 vs +0, top_k past the vocab, top_p 0 and 1, min_p > 1, u at 0 and just under 1).
// Budget: the device's token must equal the CPU's, except in a near tie: the device computes the
// probabilities in fp32 (expf) and sums them in another order, so it may take the neighbour when top_p,
// u or min_p sits within rounding of a boundary. A mismatch counts as a near tie only if the CPU itself
// picks the device's token with top_p and u moved by at most 1e-5 (relative to the mass) or min_p by
// 1e-4 relative (fp32 argument rounding of exp near -100 is ~6e-6); any other mismatch fails. Near ties
// are counted and printed, and must stay under 1% of the rows (random rows hit one with probability
// ~1e-5, so a handful means a bug, not rounding).
// Logprobs (compute_logprobs of the device's token): ids exact; values within 1e-6 + 2.4e-7 |ref| (log_z
// from fp32 expf terms summed in double: ~3e-7 absolute, plus the float rounding of the output, 2^-24 |ref|).
#include <cstdio>
#include <limits>

#include "engine/sampler.h"
#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

namespace {

double g_max_logprob_err = 0;

struct Row {
  glm::SamplingParams p;
  double u = 0;
  std::vector<std::pair<int32_t, int32_t>> history;  // (token, generated count), distinct tokens
  std::vector<uint32_t> mask;                        // a grammar's allowed tokens (empty: all)
};

int32_t cpu_token(const float* raw, int64_t vocab, const Row& r, double u, double top_p, double min_p) {
  std::vector<float> l(raw, raw + vocab);
  for (const auto& [t, n] : r.history) {
    if (t >= 0 && t < vocab) l[size_t(t)] = glm::penalize_logit(l[size_t(t)], r.p, n);
  }
  if (!r.mask.empty()) glm::apply_token_mask(l.data(), vocab, r.mask.data());
  glm::SamplingParams p = r.p;
  p.top_p = top_p;
  p.min_p = min_p;
  int32_t tok = -1;
  return glm::choose_token(l.data(), vocab, p, u, &tok).is_ok() ? tok : -1;
}

// Runs rows of logits [rows, vocab] through the kernel and compares with the CPU; returns near ties.
int run_case(const char* what, const std::vector<float>& logits, int64_t vocab, const std::vector<Row>& rows,
             int* hard_mismatches) {
  const int64_t n = int64_t(rows.size());
  std::vector<glm::cuda::SampleParams> dp(static_cast<size_t>(n));
  std::vector<int32_t> hist;
  for (int64_t r = 0; r < n; ++r) {
    const Row& row = rows[size_t(r)];
    auto& d = dp[size_t(r)];
    d.temperature = row.p.temperature;
    d.top_k = row.p.top_k;
    d.top_p = row.p.top_p;
    d.min_p = row.p.min_p;
    d.repetition_penalty = row.p.repetition_penalty;
    d.presence_penalty = row.p.presence_penalty;
    d.frequency_penalty = row.p.frequency_penalty;
    d.u = row.u;
    d.history_begin = int32_t(hist.size() / 2);
    d.history_count = int32_t(row.history.size());
    d.top_logprobs = int32_t(row.p.top_logprobs);
    for (const auto& [t, c] : row.history) hist.push_back(t), hist.push_back(c);
    if (!row.mask.empty()) {  // after the pairs, as the CUDA backend stages it
      d.mask_begin = int32_t(hist.size());
      for (uint32_t w : row.mask) hist.push_back(int32_t(w));
      if (hist.size() % 2) hist.push_back(0);  // the next row's pairs start on a pair
    }
  }
  std::vector<int32_t> want(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const Row& row = rows[size_t(r)];
    want[size_t(r)] = cpu_token(logits.data() + r * vocab, vocab, row, row.u, row.p.top_p, row.p.min_p);
  }
  DeviceBuffer<float> d_l(logits), d_work(static_cast<size_t>(n * vocab));
  DeviceBuffer<glm::cuda::SampleParams> d_p(dp);
  DeviceBuffer<int32_t> d_h(hist.empty() ? std::vector<int32_t>{0, 0} : hist), d_t(static_cast<size_t>(n));
  const int64_t stride = 32;
  DeviceBuffer<float> d_chosen(static_cast<size_t>(n)), d_top(static_cast<size_t>(n * stride));
  DeviceBuffer<int32_t> d_top_ids(static_cast<size_t>(n * stride));
  const glm::cuda::SampleLogprobs lp{d_chosen.get(), d_top_ids.get(), d_top.get(), stride};
  int near = 0;
  for_each_seed([&](uint64_t) {
    d_t.poison();
    d_chosen.poison();
    d_top.poison();
    d_top_ids.poison();
    CHECK(glm::cuda::sample_tokens(Stream{}, d_t.get(), d_l.get(), n, vocab, d_p.get(), d_h.get(), d_work.get(), &lp)
              .is_ok());
    if (!device_ok(what)) return;
    const auto got = d_t.download();
    const auto chosen = d_chosen.download(), top = d_top.download();
    const auto top_ids = d_top_ids.download();
    for (int64_t r = 0; r < n; ++r) {  // logprobs of the device's token, against compute_logprobs
      const Row& row = rows[size_t(r)];
      if (row.p.top_logprobs < 0 || got[size_t(r)] < 0) continue;
      glm::TokenLogprobs ref;
      glm::compute_logprobs(logits.data() + r * vocab, vocab, got[size_t(r)], row.p.top_logprobs, &ref);
      auto close = [&](float g, float w) {
        if (g == w) return true;  // also -inf logits, whose logprob is -inf
        const double e = std::fabs(double(g) - double(w));
        g_max_logprob_err = std::max(g_max_logprob_err, e);
        return e <= 1e-6 + 2.4e-7 * std::fabs(double(w));
      };
      CHECK(close(chosen[size_t(r)], ref.chosen)) << what << " row " << r << ": chosen logprob " << chosen[size_t(r)]
                                                 << " vs " << ref.chosen;
      for (int64_t j = 0; j < row.p.top_logprobs; ++j) {
        const size_t at = size_t(r * stride + j);
        if (size_t(j) < ref.top.size()) {
          CHECK(top_ids[at] == ref.top[size_t(j)].first && close(top[at], ref.top[size_t(j)].second))
              << what << " row " << r << " top " << j << ": " << top_ids[at] << " " << top[at] << " vs "
              << ref.top[size_t(j)].first << " " << ref.top[size_t(j)].second;
        } else {
          CHECK(top_ids[at] == -1 && std::isnan(top[at])) << what << " row " << r << " top " << j << " past the end";
        }
      }
    }
    const auto after = d_l.download();  // bitwise: NaN logits compare unequal to themselves
    CHECK(std::memcmp(after.data(), logits.data(), logits.size() * sizeof(float)) == 0) << what << ": the logits changed";
    for (int64_t r = 0; r < n; ++r) {
      const int32_t g = got[size_t(r)], w = want[size_t(r)];
      if (g == w) continue;
      const Row& row = rows[size_t(r)];
      bool explained = false;
      for (double du : {-1e-5, 0.0, 1e-5})
        for (double dtp : {-1e-5, 0.0, 1e-5})
          for (double dmp : {-1e-4, 0.0, 1e-4}) {
            const double u = std::min(std::max(row.u + du, 0.0), 1 - 0x1.0p-53);
            const double tp = row.p.top_p < 1 ? std::min(row.p.top_p + dtp, 1 - 1e-12) : 1.0;
            if (cpu_token(logits.data() + r * vocab, vocab, row, u, tp, row.p.min_p * (1 + dmp)) == g) explained = true;
          }
      if (explained) {
        ++near;
      } else {
        ++*hard_mismatches;
        CHECK(false) << what << " row " << r << ": device " << g << ", CPU " << w << " (T " << row.p.temperature
                     << " k " << row.p.top_k << " p " << row.p.top_p << " min_p " << row.p.min_p << " u " << row.u
                     << " history " << row.history.size() << ")";
      }
    }
  });
  return near;
}

Row random_row(std::mt19937& rng, int64_t vocab) {
  Row r;
  const double temps[] = {0, 0.05, 0.3, 0.7, 1, 1.7};
  const int64_t ks[] = {0, 0, 1, 2, 5, 40, vocab, vocab + 3};
  const double ps[] = {1, 1, 0.95, 0.9, 0.5, 0.1, 0};
  const double mps[] = {0, 0, 0.02, 0.2, 0.9};
  r.p.temperature = temps[rng() % 6];
  r.p.top_k = ks[rng() % 8];
  r.p.top_p = ps[rng() % 7];
  r.p.min_p = mps[rng() % 5];
  if (rng() % 2) {
    const double reps[] = {1, 1.3, 0.8};
    r.p.repetition_penalty = reps[rng() % 3];
    r.p.presence_penalty = (rng() % 2) ? 0.5 : 0;
    r.p.frequency_penalty = (rng() % 2) ? 0.25 : 0;
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) ids[size_t(i)] = int32_t(i);
    std::shuffle(ids.begin(), ids.end(), rng);
    const size_t h = std::min<size_t>(size_t(vocab), 1 + rng() % 40);
    for (size_t i = 0; i < h; ++i) r.history.push_back({ids[i], int32_t(rng() % 3)});
    if (rng() % 4 == 0) r.history.push_back({int32_t(vocab + 5), 1});  // out of range: skipped, as on the CPU
  }
  const int64_t tops[] = {-1, -1, 0, 1, 5, 32};
  r.p.top_logprobs = tops[rng() % 6];
  glm::Rng g(rng());
  r.u = g.uniform();
  return r;
}

// Logits of one of several shapes: smooth, peaked, integer ties, with NaN / -inf sprinkled in.
void random_logits(std::mt19937& rng, float* l, int64_t vocab) {
  const int kind = int(rng() % 4);
  std::normal_distribution<float> nd(0.0f, kind == 1 ? 6.0f : 2.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  for (int64_t i = 0; i < vocab; ++i) l[i] = kind == 2 ? float(small(rng)) : nd(rng);
  if (kind == 3 && vocab > 4) {
    for (int j = 0; j < 3; ++j) l[rng() % uint64_t(vocab)] = std::numeric_limits<float>::quiet_NaN();
    for (int j = 0; j < 3; ++j) l[rng() % uint64_t(vocab)] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace

TEST(sample_tokens_matches_cpu_sampler_random_rows) {
  std::mt19937 rng(5150);
  int hard = 0, near = 0, total = 0;
  for (int64_t vocab : {1, 2, 7, 33, 257, 1000, 4099}) {
    const int64_t rows = vocab < 300 ? 14 : 24;
    std::vector<float> logits(static_cast<size_t>(rows * vocab));
    std::vector<Row> rs;
    for (int64_t r = 0; r < rows; ++r) {
      random_logits(rng, logits.data() + r * vocab, vocab);
      rs.push_back(random_row(rng, vocab));
    }
    const std::string what = "sample_tokens vocab=" + std::to_string(vocab);
    near += run_case(what.c_str(), logits, vocab, rs, &hard);
    total += int(rows) * seed_count();
  }
  std::printf("  sample_tokens random rows: %d rows x seeds, %d near ties, %d hard mismatches; logprobs max |err| %.2e\n",
              total, near, hard, g_max_logprob_err);
  CHECK(hard == 0);
  CHECK(near * 100 <= total) << near << " near ties of " << total;
}

TEST(sample_tokens_honours_grammar_masks) {
  // Constrained decoding: random rows under random masks (dense, sparse, one token, the argmax
  // excluded), with and without penalties and logprobs. The device must choose what the CPU sampler
  // chooses on the masked logits, and logprobs stay those of the raw logits.
  std::mt19937 rng(5152);
  int hard = 0, near = 0, total = 0;
  for (int64_t vocab : {5, 33, 1000, 4099}) {
    const int64_t rows = 16;
    std::vector<float> logits(static_cast<size_t>(rows * vocab));
    std::vector<Row> rs;
    for (int64_t r = 0; r < rows; ++r) {
      float* l = logits.data() + r * vocab;
      random_logits(rng, l, vocab);
      Row row = random_row(rng, vocab);
      row.mask.assign(size_t((vocab + 31) / 32), 0);
      const int kind = int(r % 4);
      const int32_t best = glm::argmax_token(l, vocab);
      for (int64_t i = 0; i < vocab; ++i) {
        const bool on = kind == 0 ? rng() % 4 != 0 : kind == 1 ? rng() % 50 == 0 : kind == 2 ? i == int64_t(rng() % 1) + vocab / 2 : i != best;
        if (on) row.mask[size_t(i / 32)] |= 1u << (i % 32);
      }
      row.mask[size_t((vocab / 2) / 32)] |= 1u << ((vocab / 2) % 32);  // never empty
      // Bits past the vocabulary are set too: the kernel must not read logits there.
      if (vocab % 32) row.mask.back() |= ~((1u << (vocab % 32)) - 1);
      rs.push_back(row);
    }
    const std::string what = "sample_tokens masked vocab=" + std::to_string(vocab);
    near += run_case(what.c_str(), logits, vocab, rs, &hard);
    total += int(rows) * seed_count();
  }
  std::printf("  sample_tokens masked rows: %d rows x seeds, %d near ties, %d hard mismatches\n", total, near, hard);
  CHECK(hard == 0);
  CHECK(near * 100 <= total) << near << " near ties of " << total;
}

TEST(sample_tokens_matches_cpu_sampler_vocab_151552) {
  // Two rows at GLM's vocab: top-p 0.9 + temperature 0.7 with penalties, and pure temperature 1 (the
  // whole vocab in play, u near the top of the range).
  std::mt19937 rng(5151);
  const int64_t vocab = 151552;
  std::vector<float> logits(static_cast<size_t>(2 * vocab));
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (auto& v : logits) v = nd(rng);
  std::vector<Row> rs(2);
  rs[0].p.temperature = 0.7;
  rs[0].p.top_p = 0.9;
  rs[0].p.top_k = 0;
  rs[0].p.repetition_penalty = 1.1;
  rs[0].p.frequency_penalty = 0.3;
  for (int i = 0; i < 300; ++i) rs[0].history.push_back({int32_t(i * 499), i % 3});
  rs[0].u = 0.37;
  rs[1].p.temperature = 1;
  rs[1].u = 0.9990234375;
  rs[1].p.top_logprobs = 20;
  int hard = 0;
  const int near = run_case("sample_tokens vocab=151552", logits, vocab, rs, &hard);
  std::printf("  sample_tokens vocab 151552: %d near ties, %d hard mismatches; logprobs max |err| %.2e\n", near, hard,
              g_max_logprob_err);
  CHECK(hard == 0 && near == 0);
}

TEST(sample_tokens_edge_cases) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const int64_t vocab = 37;
  std::vector<float> logits;
  std::vector<Row> rs;
  auto add = [&](std::vector<float> l, double t, int64_t k, double p, double mp, double u) {
    l.resize(size_t(vocab), -inf);
    logits.insert(logits.end(), l.begin(), l.end());
    Row r;
    r.p.temperature = t;
    r.p.top_k = k;
    r.p.top_p = p;
    r.p.min_p = mp;
    r.u = u;
    rs.push_back(r);
  };
  std::vector<float> all_nan(size_t(vocab), nan), ties(static_cast<size_t>(vocab)), zeros(size_t(vocab), 0.0f);
  for (int64_t i = 0; i < vocab; ++i) ties[size_t(i)] = float(i % 3);  // runs of equal logits
  for (int64_t i = 0; i < vocab; i += 2) zeros[size_t(i)] = -0.0f;
  add(all_nan, 0, 0, 1, 0, 0.5);     // greedy, every logit NaN: -1
  add(all_nan, 1, 0, 1, 0, 0.5);     // sampled, every logit NaN: -1
  add({}, 1, 0, 1, 0, 0.5);          // every logit -inf: -1
  add({}, 0, 0, 1, 0, 0.5);          // greedy over -inf: id 0
  add({1, 2, nan, inf, 3, inf}, 0.7, 0, 0.5, 0, 0.99);  // +inf tie: the lowest id (3)
  for (double u : {0.0, 0.2, 0.5, 0.8, 1 - 0x1.0p-53}) {
    add(ties, 1, 5, 1, 0, u);        // top-k cuts inside the run of 2s
    add(ties, 1, 0, 0.3, 0, u);      // top-p cuts inside the run of 2s
    add(ties, 2, 100, 1, 0, u);      // top_k past the vocab, top_p 1: all of it
    add(ties, 1, 0, 1, 0.5, u);      // min-p keeps the 2s and 1s
    add(zeros, 1, 0, 1, 0, u);       // -0 and +0 are one logit
    add(ties, 1, 0, 0, 0, u);        // top_p 0: the top token
    add(ties, 1, 0, 1, 1.5, u);      // min_p > 1: the top token
    add({nan, 1, nan, 1, 0.5f}, 0.5, 2, 0.99, 0.01, u);  // NaN never a candidate
  }
  int hard = 0;
  const int near = run_case("sample_tokens edge cases", logits, vocab, rs, &hard);
  CHECK(hard == 0 && near == 0) << near << " near ties";
  // The sampler seam: a Sampler driven through history() / draw_uniform() / record() with the device's
  // choice follows the same tokens as one that samples on the CPU.
  glm::SamplingParams sp;
  sp.temperature = 0.8;
  sp.top_k = 20;
  sp.top_p = 0.9;
  sp.repetition_penalty = 1.2;
  sp.presence_penalty = 0.3;
  sp.frequency_penalty = 0.2;
  sp.seed = 77;
  glm::Sampler cpu(sp), dev(sp);
  cpu.set_context({1, 2, 3});
  dev.set_context({1, 2, 3});
  std::mt19937 rng(5152);
  const int64_t v2 = 300;
  DeviceBuffer<float> d_l(static_cast<size_t>(v2)), d_work(static_cast<size_t>(v2));
  DeviceBuffer<int32_t> d_t(1);
  for (int step = 0; step < 12; ++step) {
    const auto l = random_floats(rng, size_t(v2), -2.0f, 2.0f);
    int32_t want = -1;
    CHECK(cpu.sample(l.data(), v2, &want).is_ok());
    glm::cuda::SampleParams p;
    p.temperature = sp.temperature;
    p.top_k = sp.top_k;
    p.top_p = sp.top_p;
    p.repetition_penalty = sp.repetition_penalty;
    p.presence_penalty = sp.presence_penalty;
    p.frequency_penalty = sp.frequency_penalty;
    p.u = dev.draw_uniform();
    std::vector<int32_t> hist;
    for (const auto& [t, c] : dev.history()) hist.push_back(t), hist.push_back(c);
    p.history_count = int32_t(hist.size() / 2);
    d_l.upload(l);
    DeviceBuffer<glm::cuda::SampleParams> d_p(std::vector<glm::cuda::SampleParams>{p});
    DeviceBuffer<int32_t> d_h(hist);
    CHECK(glm::cuda::sample_tokens(Stream{}, d_t.get(), d_l.get(), 1, v2, d_p.get(), d_h.get(), d_work.get()).is_ok());
    if (!device_ok("sample_tokens sampler seam")) return;
    const int32_t got = d_t.download()[0];
    CHECK(got == want) << "step " << step << ": device " << got << ", CPU sampler " << want;
    dev.record(got);
  }
  CHECK(!glm::cuda::sample_tokens(Stream{}, nullptr, d_l.get(), 1, v2, nullptr, nullptr, d_work.get()).is_ok());
  CHECK(!glm::cuda::sample_tokens(Stream{}, d_t.get(), d_l.get(), 1, 0, nullptr, nullptr, d_work.get()).is_ok());
}
